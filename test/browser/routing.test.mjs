// The console under SWITCHBOARD_ROUTING=claim in real Chromium: two
// operators' tabs see every waiting chat with its place in the queue; one
// claims a chat, the other sees it assigned and cannot claim it; release,
// availability and transfer work from the buttons.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertClean, joinConsole, joinWidget, launch, screenshot, startServer, WAIT_MS } from './helpers.mjs';

let server;
let browser;

before(async () => {
  [server, browser] = await Promise.all([startServer({ SWITCHBOARD_ROUTING: 'claim' }), launch()]);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const item = (page, name) => page.locator('.chat-item', { hasText: name });
const owner = (page) => page.locator('.chat .routing .owner');
const bubbles = (page, kind, hasText) => page.locator(`.log .msg.${kind}`, { hasText });

test('claim mode: one console claims a chat, the other sees it assigned and cannot claim it', async () => {
  // A context (a window) per tab: a tab in the background of a window
  // runs its page's timers and frames late.
  const contexts = [];
  const tab = async () => {
    const c = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    contexts.push(c);
    return c;
  };
  const ana = await joinConsole(await tab(), server.url, 'Ana', 7);
  const luis = await joinConsole(await tab(), server.url, 'Luis', 8);
  for (const crm of [ana, luis]) assert.equal(await crm.isVisible('#availability'), true, 'the availability switch shows');
  const marta = await joinWidget(await tab(), server.url, { name: 'Marta', username: 'marta' });
  await marta.locator('.log', { hasText: 'number 1 in the queue' }).waitFor({ timeout: WAIT_MS });
  const jorge = await joinWidget(await tab(), server.url, { name: 'Jorge', username: 'jorge' });

  // Both consoles list both chats with their places in the queue.
  for (const crm of [ana, luis]) {
    await item(crm, 'marta').filter({ hasText: 'queued #1' }).waitFor({ timeout: WAIT_MS });
    await item(crm, 'jorge').filter({ hasText: 'queued #2' }).waitFor({ timeout: WAIT_MS });
    await item(crm, 'marta').click();
    await owner(crm).filter({ hasText: 'queued #1' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await crm.isEnabled('.chat .claim'), true);
  }

  // Ana claims Marta's chat: hers on her console, Ana's on Luis's, and Jorge moves up.
  await ana.click('.chat .claim');
  await owner(ana).filter({ hasText: 'yours' }).waitFor({ timeout: WAIT_MS });
  await owner(luis).filter({ hasText: 'owner: Ana' }).waitFor({ timeout: WAIT_MS });
  await marta.locator('.log', { hasText: 'Ana is now with you' }).waitFor({ timeout: WAIT_MS });
  for (const crm of [ana, luis]) await item(crm, 'jorge').filter({ hasText: 'queued #1' }).waitFor({ timeout: WAIT_MS });
  // Luis cannot claim it, nor answer it: the buttons say so, and the server too.
  assert.equal(await luis.isEnabled('.chat .claim'), false, 'claim is off for a chat another operator owns');
  assert.equal(await luis.isEnabled('.chat .send'), false, 'reply is off for a chat another operator owns');
  const refused = await luis.evaluate((clientId) => new Promise((resolve) => {
    window.switchboardConsole.emit('claimChat', { clientId }, resolve);
  }), await item(luis, 'marta').getAttribute('data-client-id'));
  assert.equal(refused.ok, false);
  assert.equal(refused.error.code, 'already_claimed');
  await screenshot(luis, 'console-claim', { docs: false });

  // Ana answers; Luis sees nothing of it (he neither owns nor watches the chat).
  await ana.fill('.chat .text', 'Hola Marta, soy Ana');
  await ana.press('.chat .text', 'Enter');
  await bubbles(marta, 'theirs', 'Hola Marta, soy Ana').waitFor({ timeout: WAIT_MS });
  // Watching it, Luis follows her replies.
  await luis.click('.chat .watch');
  await owner(luis).filter({ hasText: 'watching' }).waitFor({ timeout: WAIT_MS });
  await ana.fill('.chat .text', '¿En qué te ayudo?');
  await ana.press('.chat .text', 'Enter');
  await bubbles(luis, 'other', '¿En qué te ayudo?').waitFor({ timeout: WAIT_MS });
  assert.equal(await bubbles(luis, 'other', 'Hola Marta, soy Ana').count(), 0);

  // Ana releases it: back in the queue ahead of Jorge, and Luis may claim it.
  await ana.click('.chat .release');
  for (const crm of [ana, luis]) {
    await item(crm, 'marta').filter({ hasText: 'queued #1' }).waitFor({ timeout: WAIT_MS });
    await item(crm, 'jorge').filter({ hasText: 'queued #2' }).waitFor({ timeout: WAIT_MS });
  }
  await luis.click('.chat .claim');
  await owner(luis).filter({ hasText: 'yours' }).waitFor({ timeout: WAIT_MS });
  await owner(ana).filter({ hasText: 'owner: Luis' }).waitFor({ timeout: WAIT_MS });

  // Ana goes away: a transfer to her is refused, and shown on Luis's console.
  await ana.click('#availability');
  await ana.locator('#availability', { hasText: 'Away' }).waitFor({ timeout: WAIT_MS });
  await luis.fill('.chat .to', '7');
  await luis.click('.chat .transfer button');
  await luis.locator('.chat .log', { hasText: 'transferChat: operator_away' }).waitFor({ timeout: WAIT_MS });
  // Back: the transfer goes through.
  await ana.click('#availability');
  await ana.locator('#availability', { hasText: 'Available' }).waitFor({ timeout: WAIT_MS });
  await luis.click('.chat .transfer button');
  await owner(ana).filter({ hasText: 'yours' }).waitFor({ timeout: WAIT_MS });
  await owner(luis).filter({ hasText: 'owner: Ana' }).waitFor({ timeout: WAIT_MS });
  await screenshot(ana, 'console-routing', { docs: false });

  for (const page of [ana, luis, marta, jorge]) assertClean(page);
  await Promise.all(contexts.map((c) => c.close()));
});

test('auto mode: a chat waits in the queue while its operator is full, then comes to her by name', async () => {
  const auto = await startServer({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '1' });
  const contexts = [];
  const tab = async () => {
    const c = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    contexts.push(c);
    return c;
  };
  try {
    const ana = await joinConsole(await tab(), auto.url, 'Ana', 7);
    const marta = await joinWidget(await tab(), auto.url, { name: 'Marta', username: 'marta' });
    await item(ana, 'marta').filter({ hasText: 'yours' }).waitFor({ timeout: WAIT_MS });
    await marta.locator('.log', { hasText: 'Ana is now with you' }).waitFor({ timeout: WAIT_MS });
    // Ana is full: Jorge waits, first in the queue, known to her console by his id alone.
    const jorge = await joinWidget(await tab(), auto.url, { name: 'Jorge', username: 'jorge' });
    await jorge.locator('.log', { hasText: 'number 1 in the queue' }).waitFor({ timeout: WAIT_MS });
    const waiting = ana.locator('.chat-item', { hasText: 'queued #1' });
    await waiting.waitFor({ timeout: WAIT_MS });
    assert.equal(await item(ana, 'jorge').count(), 0);
    // Marta ends her chat: Jorge's comes to Ana, by name.
    await marta.click('#end');
    await item(ana, 'jorge').filter({ hasText: 'yours' }).waitFor({ timeout: WAIT_MS });
    await jorge.locator('.log', { hasText: 'Ana is now with you' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await ana.locator('.chat-item').count(), 2, 'the waiting chat became Jorge\'s, not a second one');
    for (const page of [ana, marta, jorge]) assertClean(page);
  } finally {
    await Promise.all(contexts.map((c) => c.close()));
    await auto.stop();
  }
});
