// The widget and the console in real Chromium tabs, against the real
// server: a conversation both ways with text and images, typing, a blip
// and its recovery, ending the chat; two consoles see each other.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertClean, joinConsole, joinWidget, launch, makePNG, open, screenshot, startServer, WAIT_MS } from './helpers.mjs';

let server;
let browser;

before(async () => {
  [server, browser] = await Promise.all([startServer(), launch()]);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A console tab joined as name/id, its chat list waiting. */
async function operator(context, name, id) {
  const page = await joinConsole(context, server.url, name, id);
  assert.equal(await page.isVisible('#op-token'), false, 'no token field without operator auth');
  assert.equal(await page.isVisible('#availability'), false, 'no availability switch without routing');
  return page;
}

/** A widget tab whose player has joined. */
const player = (context, profile) => joinWidget(context, server.url, profile);

const bubbles = (page, kind, hasText) => page.locator(`.log .msg.${kind}`, hasText ? { hasText } : {});

describe('widget and console', () => {
  test('the index page links the three pages and names this server', async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 820 } });
    const page = await open(context, `${server.url}/`);
    for (const id of ['#open-widget', '#open-console', '#open-dashboard']) assert.ok(await page.isVisible(id), id);
    await page.locator('.origin').first().filter({ hasText: server.url }).waitFor({ timeout: WAIT_MS });
    await screenshot(page, 'index');
    assertClean(page);
    await context.close();
  });

  test('a player and an operator chat both ways with text and images, see typing, and both see the end', async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    const phone = await browser.newContext({ viewport: { width: 400, height: 740 }, isMobile: true, hasTouch: true });
    const crm = await operator(context, 'Luis', 7);
    const widget = await player(phone, { name: 'Ana García', username: 'ana_g', phone: '+34 600 111 222' });

    // The limits the server enforces are shown before anything is sent.
    assert.match(await widget.textContent('#limits'), /PNG, JPEG, GIF, WEBP, up to 7\.5 MB \(10,000,000 characters of base64\)/);

    // The chat arrives on the console, with its phone, and opens.
    const item = crm.locator('.chat-item', { hasText: 'ana_g' });
    await item.waitFor({ timeout: WAIT_MS });
    await crm.locator('.chat .title', { hasText: 'ana_g' }).waitFor({ timeout: WAIT_MS });
    assert.match(await crm.textContent('.chat .phone'), /\+34 600 111 222/);

    // Typing shows on the console while the player types.
    await widget.type('#text', 'Hola, no me llega');
    await crm.locator('.chat .typing', { hasText: 'ana_g is typing' }).waitFor({ timeout: WAIT_MS });
    await widget.press('#text', 'Enter');
    await bubbles(crm, 'theirs', 'Hola, no me llega').waitFor({ timeout: WAIT_MS });
    await bubbles(widget, 'mine', 'Hola, no me llega').filter({ hasText: 'sent' }).waitFor({ timeout: WAIT_MS });
    await crm.locator('.chat .typing', { hasText: /^$/ }).waitFor({ timeout: WAIT_MS });

    // Typing shows on the widget while the operator types; the reply arrives with the operator's name.
    await crm.type('.chat .text', '¿Qué número de pedido?');
    await widget.locator('#typing', { hasText: 'The operator is typing' }).waitFor({ timeout: WAIT_MS });
    await crm.click('.chat .send');
    const reply = bubbles(widget, 'theirs', '¿Qué número de pedido?');
    await reply.waitFor({ timeout: WAIT_MS });
    assert.match(await reply.textContent(), /Luis/);

    // An image each way: the player's reaches the console, the operator's the player.
    const png = makePNG(64, 40, [22, 163, 74]);
    await widget.setInputFiles('#file', { name: 'pedido.png', mimeType: 'image/png', buffer: png });
    const atConsole = crm.locator('.log .msg.theirs[data-type="image"] img');
    await atConsole.waitFor({ timeout: WAIT_MS });
    assert.equal(await atConsole.getAttribute('src'), `data:image/png;base64,${png.toString('base64')}`);
    assert.ok(await atConsole.evaluate((img) => img.complete && img.naturalWidth === 64), 'the image renders on the console');
    const png2 = makePNG(40, 40, [220, 38, 38]);
    await crm.setInputFiles('.chat .file', { name: 'respuesta.png', mimeType: 'image/png', buffer: png2 });
    const atWidget = widget.locator('.log .msg.theirs[data-type="image"] img');
    await atWidget.waitFor({ timeout: WAIT_MS });
    assert.ok(await atWidget.evaluate((img) => img.complete && img.naturalWidth === 40), 'the image renders on the widget');

    // A file the server would refuse is refused on the page, with the limit named.
    await widget.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
    await widget.locator('.note.bad', { hasText: 'text/plain is not allowed' }).waitFor({ timeout: WAIT_MS });

    // A blip: the player is away for the operator, then back, and nothing is lost.
    await widget.evaluate(() => window.switchboardWidget.drop());
    await widget.locator('#status', { hasText: 'away' }).waitFor({ timeout: WAIT_MS });
    await crm.locator('.chat .log .note', { hasText: 'The player is away' }).waitFor({ timeout: WAIT_MS });
    await crm.type('.chat .text', 'Sigo aquí');
    await crm.click('.chat .send');
    await widget.locator('#status', { hasText: 'recovered' }).waitFor({ timeout: WAIT_MS });
    await bubbles(widget, 'theirs', 'Sigo aquí').waitFor({ timeout: WAIT_MS });
    await crm.locator('.chat .log .note', { hasText: 'The player is back' }).waitFor({ timeout: WAIT_MS });

    await screenshot(widget, 'widget');
    await screenshot(crm, 'console');

    // The operator ends the chat: both pages say so.
    await crm.click('.chat .end');
    await widget.locator('.note.bad', { hasText: 'Chat ended' }).waitFor({ timeout: WAIT_MS });
    await widget.locator('#status', { hasText: 'chat ended' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await widget.isDisabled('#text'), true);
    await crm.locator('.chat-item.ended', { hasText: 'ana_g' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await crm.isDisabled('.chat .text'), true);

    assertClean(widget);
    assertClean(crm);
    await context.close();
    await phone.close();
  });

  test('two consoles see each other\'s replies, unread counts grow, and a player who ends is ended on both', async () => {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const ana = await operator(context, 'Ana', 1);
    const luis = await operator(context, 'Luis', 2);
    const p1 = await player(context, { name: 'Marta' });
    const p2 = await player(context, { name: 'Jorge', username: 'jorge' });
    for (const crm of [ana, luis]) {
      await crm.locator('.chat-item', { hasText: 'Marta' }).waitFor({ timeout: WAIT_MS });
      await crm.locator('.chat-item', { hasText: 'jorge' }).waitFor({ timeout: WAIT_MS });
    }
    // Each console opened the first chat it saw; Jorge writes: unread on both.
    await p2.fill('#text', 'uno');
    await p2.press('#text', 'Enter');
    await p2.fill('#text', 'dos');
    await p2.press('#text', 'Enter');
    for (const crm of [ana, luis]) {
      const open = await crm.textContent('.chat .title');
      if (open === 'jorge') continue;
      await crm.locator('.chat-item', { hasText: 'jorge' }).locator('.badge.unread', { hasText: '2' }).waitFor({ timeout: WAIT_MS });
      assert.match(await crm.title(), /^\(2\) /);
    }

    // Ana answers Marta; Luis sees it as another operator's reply, and Marta gets it.
    await ana.locator('.chat-item', { hasText: 'Marta' }).click();
    await luis.locator('.chat-item', { hasText: 'Marta' }).click();
    await ana.fill('.chat .text', 'Te atiende Ana');
    await ana.press('.chat .text', 'Enter');
    await bubbles(luis, 'other', 'Te atiende Ana').filter({ hasText: 'Ana (another operator)' }).waitFor({ timeout: WAIT_MS });
    await bubbles(p1, 'theirs', 'Te atiende Ana').waitFor({ timeout: WAIT_MS });
    // And the other way round.
    await luis.fill('.chat .text', 'Y Luis también');
    await luis.press('.chat .text', 'Enter');
    await bubbles(ana, 'other', 'Y Luis también').filter({ hasText: 'Luis (another operator)' }).waitFor({ timeout: WAIT_MS });
    await bubbles(p1, 'theirs', 'Y Luis también').waitFor({ timeout: WAIT_MS });
    assert.equal(await bubbles(p2, 'theirs').count(), 0, 'the other player gets nothing');

    // Opening Jorge's chat clears its unread count.
    await ana.locator('.chat-item', { hasText: 'jorge' }).click();
    await ana.locator('.chat-item', { hasText: 'jorge' }).locator('.badge:not(.unread)').waitFor({ timeout: WAIT_MS });
    assert.equal(await bubbles(ana, 'theirs').count(), 2);

    // Marta ends her chat: both consoles show it ended.
    await p1.click('#end');
    await p1.locator('#status', { hasText: 'chat ended' }).waitFor({ timeout: WAIT_MS });
    for (const crm of [ana, luis]) await crm.locator('.chat-item.ended', { hasText: 'Marta' }).waitFor({ timeout: WAIT_MS });

    for (const page of [ana, luis, p1, p2]) assertClean(page);
    await context.close();
  });

  test('a reloaded widget keeps its conversation: same chat on the console, no second one', async () => {
    const context = await browser.newContext();
    const crm = await operator(context, 'Eva', 3);
    const widget = await player(context, { name: 'Reload', username: 'recarga' });
    await crm.locator('.chat-item', { hasText: 'recarga' }).click({ timeout: WAIT_MS });
    await widget.reload();
    await widget.locator('#status', { hasText: 'resumed' }).waitFor({ timeout: WAIT_MS });
    await widget.fill('#text', 'después de recargar');
    await widget.press('#text', 'Enter');
    await bubbles(crm, 'theirs', 'después de recargar').waitFor({ timeout: WAIT_MS });
    assert.equal(await crm.locator('.chat-item', { hasText: 'recarga' }).count(), 1);
    assert.equal(await crm.locator('.chat-item.ended').count(), 0);
    assertClean(widget);
    assertClean(crm);
    await context.close();
  });
});
