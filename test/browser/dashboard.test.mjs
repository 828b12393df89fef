// The dashboard in real Chromium: its figures move while the load tool
// runs against the server, and they are the server's own.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { assertClean, launch, LOADTEST, open, screenshot, startRedis, startServer } from './helpers.mjs';

let server;
let browser;

before(async () => {
  assert.ok(fs.existsSync(LOADTEST), `${LOADTEST} is missing: go build -o bin/loadtest ./cmd/loadtest`);
  [server, browser] = await Promise.all([startServer(), launch()]);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A tile's value as a number (the first number in it). */
async function tileNumber(page, id) {
  const text = await page.textContent(`#tile-${id} .value`);
  const m = /[\d,.]+/.exec(text ?? '');
  return m ? Number(m[0].replace(/,/g, '')) : NaN;
}

function runLoad(args, url = server.url) {
  const proc = spawn(LOADTEST, ['--url', url, '--quiet', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => {
    out += d;
  });
  proc.stderr.on('data', (d) => {
    out += d;
  });
  const done = new Promise((resolve) => proc.once('exit', (code) => resolve({ code, out })));
  return { proc, done };
}

test('the dashboard\'s numbers move while the load tool runs', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await open(context, `${server.url}/dashboard`);
  await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 5000 });
  assert.equal(await tileNumber(page, 'players'), 0);
  assert.equal(await page.isVisible('#token-form'), false, 'no token asked for without operator auth');

  const started = Date.now();
  const load = runLoad(['--players', '60', '--operators', '3', '--rate', '1', '--reply-chance', '0.3', '--reply-think', '200ms',
    '--typing-share', '0.3', '--image-share', '0.05', '--image-size', '4000', '--ramp', '200', '--duration', '8s']);
  // Within the run: players joined, messages in and deliveries out each
  // second, a latency percentile, and the charts drawn.
  const seen = { players: 0, in: 0, out: 0, joins: 0, latency: false };
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline && !(seen.players >= 60 && seen.in > 0 && seen.out > 0 && seen.joins > 0 && seen.latency)) {
    seen.players = Math.max(seen.players, await tileNumber(page, 'players'));
    seen.in = Math.max(seen.in, await tileNumber(page, 'in'));
    seen.out = Math.max(seen.out, await tileNumber(page, 'out'));
    seen.joins = Math.max(seen.joins, await tileNumber(page, 'joins'));
    seen.latency ||= /^\d/.test((await page.textContent('#tile-latency .value')) ?? '');
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(seen.players >= 60, `players ${seen.players}`);
  assert.ok(seen.joins > 0, `joins/s ${seen.joins}`);
  assert.ok(seen.in > 0, `messages in/s ${seen.in}`);
  assert.ok(seen.out > seen.in, `deliveries out/s ${seen.out} (each message reaches 3 operators)`);
  assert.ok(seen.latency, 'a latency percentile is shown');
  assert.ok(await tileNumber(page, 'operators') >= 3);
  // Every operator of the load is listed by name.
  await page.locator('#t-operators td', { hasText: /\(\d+\)/ }).first().waitFor({ timeout: 3000 });
  // The transports: the load's sockets are websockets.
  assert.ok(Number((await page.textContent('#tile-transports .value')).split('/')[0].replace(/,/g, '')) >= 60);
  // The charts have drawn something: some pixels are not blank.
  const inked = await page.evaluate(() => {
    const c = document.getElementById('chart-rate');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && !(d[i] > 230 && d[i + 1] > 230 && d[i + 2] > 230)) n++;
    return n;
  });
  assert.ok(inked > 100, `the messages chart has ${inked} inked pixels`);
  // The picture: late in the run, with a few seconds of charts.
  await page.waitForTimeout(Math.max(0, started + 7000 - Date.now()));
  await screenshot(page, 'dashboard');

  const { code, out } = await load.done;
  assert.equal(code, 0, `loadtest:\n${out}`);
  // After the run the crowd is gone and the rates fall back to zero.
  await page.waitForFunction(() => {
    const v = (id) => Number((document.querySelector(`#tile-${id} .value`)?.textContent ?? 'x').replace(/,/g, ''));
    return v('players') === 0 && v('in') === 0;
  }, null, { timeout: 10000 });
  assertClean(page);
  await context.close();
});

test('in a cluster, one node\'s dashboard shows another\'s figures moving while the load runs there', async () => {
  const redis = await startRedis();
  const env = (id) => ({ REDIS_URL: redis.url, SWITCHBOARD_NODE_ID: id, SWITCHBOARD_CLUSTER_HEARTBEAT: '500ms' });
  const [a, b] = await Promise.all([startServer(env('node-a')), startServer(env('node-b'))]);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    const page = await open(context, `${b.url}/dashboard`);
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 5000 });
    const row = page.locator('#t-nodes tr', { hasText: 'node-a' });
    await row.waitFor({ timeout: 10000 });
    await page.locator('#t-nodes tr', { hasText: 'node-b (this one)' }).waitFor({ timeout: 5000 });
    // A node's row: node, sockets by role, by transport, messages in / s, deliveries out / s, …
    const cells = async (r) => (await r.locator('td').allTextContents()).map((c) => c.trim());
    const num = (c) => Number(c.split('/')[0].replace(/,/g, ''));

    const load = runLoad(['--players', '40', '--operators', '2', '--rate', '1', '--reply-chance', '0.3', '--reply-think', '200ms', '--ramp', '200', '--duration', '6s'], a.url);
    const seen = { players: 0, in: 0, out: 0, websockets: 0, bIn: 0 };
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline && !(seen.players >= 40 && seen.in > 0 && seen.out > 0 && seen.websockets >= 40)) {
      const ca = await cells(row);
      seen.players = Math.max(seen.players, num(ca[1]));
      seen.websockets = Math.max(seen.websockets, num(ca[2]));
      seen.in = Math.max(seen.in, num(ca[3]) || 0);
      seen.out = Math.max(seen.out, num(ca[4]) || 0);
      const cb = await cells(page.locator('#t-nodes tr', { hasText: 'node-b' }));
      seen.bIn = Math.max(seen.bIn, num(cb[3]) || 0);
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(seen.players >= 40, `node-a's players as node-b shows them: ${seen.players}`);
    assert.ok(seen.websockets >= 40, `node-a's websockets as node-b shows them: ${seen.websockets}`);
    assert.ok(seen.in > 0, `node-a's messages in / s as node-b shows them: ${seen.in}`);
    assert.ok(seen.out > 0, `node-a's deliveries out / s as node-b shows them: ${seen.out}`);
    assert.equal(seen.bIn, 0, 'node-b itself received no messages');
    await screenshot(page, 'dashboard-cluster', { docs: false });
    const { code, out } = await load.done;
    assert.equal(code, 0, `loadtest:\n${out}`);
    assertClean(page);
  } finally {
    await context.close();
    await Promise.all([a.stop(), b.stop()]);
    redis.stop();
  }
});
