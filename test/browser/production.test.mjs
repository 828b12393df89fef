// Production: the pages are off unless asked for; asked for, they carry a
// CSP, the dashboard shows nothing and the console joins nobody without an
// operator's token, and both work with one.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertClean, freePort, launch, open, screenshot, signHS256, spareBits, startServer, tamper, WAIT_MS } from './helpers.mjs';

const SECRET = 'browser-suite-operator-secret-0123456789';
const PLAYER_SECRET = 'browser-suite-player-secret-9876543210';
const token = (claims) => signHS256({ exp: Math.floor(Date.now() / 1000) + 600, ...claims }, SECRET);

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

describe('production', () => {
  let server;
  before(async () => {
    // The pages' own origin must be allowed, as any browser origin in production.
    const port = await freePort();
    server = await startServer({
      PORT: String(port),
      NODE_ENV: 'production',
      CORS_ORIGIN: `http://127.0.0.1:${port}`,
      SWITCHBOARD_JWT_SECRET: SECRET,
      SWITCHBOARD_CLIENT_SECRET: PLAYER_SECRET,
      SWITCHBOARD_PAGES: 'true',
      SWITCHBOARD_DASHBOARD: 'true',
      SWITCHBOARD_LOG_LEVEL: 'error',
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('the pages carry a CSP that allows only this server', async () => {
    for (const p of ['/', '/demo/widget', '/demo/console', '/dashboard']) {
      const res = await fetch(server.url + p, { headers: { Accept: 'text/html' } });
      assert.equal(res.status, 200, p);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'self'/, p);
      assert.match(csp, /connect-src 'self' ws:\/\/127\.0\.0\.1:\d+ wss:\/\/127\.0\.0\.1:\d+/, p);
    }
    // Other origins stay refused, pages or not.
    const res = await fetch(`${server.url}/dashboard`, { headers: { Origin: 'https://evil.example.com' } });
    assert.equal(res.status, 403);
  });

  test('without a token the dashboard shows nothing; with a player\'s it refuses; with an operator\'s it is live', async () => {
    const res = await fetch(`${server.url}/dashboard/data`);
    assert.equal(res.status, 401);
    assert.doesNotMatch(await res.text(), /switchboard_|socketId/);

    const context = await browser.newContext();
    // The page's own refused fetch is logged by Chromium as an error.
    const page = await open(context, `${server.url}/dashboard`, { allow: [/status of 401/] });
    await page.locator('#status', { hasText: 'refused' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await page.isVisible('#token-form'), true);
    assert.equal(await page.isVisible('#figures'), false);
    assert.equal(await page.textContent('#tiles'), '', 'no figure reached the page');
    await screenshot(page, 'dashboard-refused', { docs: false });

    // Made up, forged, a real one re-encoded, then a real player's: refused.
    const player = signHS256({ sub: 'p1', username: 'p1', exp: Math.floor(Date.now() / 1000) + 600 }, PLAYER_SECRET);
    const refusedTokens = [
      ['not.a.token', 'invalid token'],
      [tamper(token({ sub: 'x' })), 'invalid token'],
      [spareBits(token({ sub: 'x' })), 'invalid token'],
      [player, 'not an operator'],
    ];
    for (const [bad, why] of refusedTokens) {
      await page.fill('#token', bad);
      await page.click('#token-go');
      await page.locator('#token-error', { hasText: why }).waitFor({ timeout: WAIT_MS });
      assert.equal(await page.textContent('#tiles'), '');
    }
    await page.fill('#token', token({ sub: 'ana', name: 'Ana' }));
    await page.click('#token-go');
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await page.isVisible('#token-form'), false);
    assertClean(page);
    await context.close();
  });

  test('a late answer for an earlier token changes nothing on the dashboard', async () => {
    const context = await browser.newContext();
    const page = await open(context, `${server.url}/dashboard`, { allow: [/status of 401/] });
    await page.locator('#status', { hasText: 'refused' }).waitFor({ timeout: WAIT_MS });
    // The refusal of a mistyped token is slow to come back; the right one
    // is given meanwhile.
    const typo = tamper(token({ sub: 'ana' }));
    let late;
    await page.route('**/dashboard/data', async (route) => {
      if (route.request().headers().authorization === `Bearer ${typo}`) {
        late = new Promise((r) => setTimeout(r, 1500));
        await late;
      }
      await route.continue();
    });
    await page.fill('#token', typo);
    await page.click('#token-go');
    await page.fill('#token', token({ sub: 'ana', name: 'Ana' }));
    await page.click('#token-go');
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: WAIT_MS });
    assert.ok(late, 'the mistyped token was sent');
    await late;
    await page.waitForTimeout(1500); // its 401 is in, and the next reads after it
    assert.equal(await page.textContent('#status'), 'live');
    assert.equal(await page.isVisible('#token-form'), false);
    assert.equal(await page.textContent('#token-error'), '');
    assertClean(page);
    await context.close();
  });

  test('without a token the console joins nobody; with a bad one the server refuses; with a good one it works', async () => {
    const context = await browser.newContext();
    const page = await open(context, `${server.url}/demo/console`);
    assert.equal(await page.isVisible('#op-token'), true, 'the console asks for a token');
    await page.fill('#op-name', 'Mallory');
    await page.fill('#op-id', '66');
    await page.click('#join');
    await page.locator('#login-error', { hasText: 'needs an operator token' }).waitFor({ timeout: WAIT_MS });

    // The server itself refuses a token it cannot verify, however the page is used.
    await page.fill('#op-token', tamper(token({ sub: '66' })));
    await page.click('#join');
    await page.locator('#login-error', { hasText: 'Join refused: unauthorized' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await page.isVisible('#console'), false);
    await screenshot(page, 'console-refused', { docs: false });

    // A player is there, and only the real operator hears of it.
    const widget = await open(context, `${server.url}/demo/widget`);
    await widget.fill('#name', 'Prod player');
    await widget.click('#start');
    await widget.locator('#status', { hasText: /^connected/ }).waitFor({ timeout: WAIT_MS });
    assert.equal(await page.locator('.chat-item').count(), 0);

    await page.fill('#op-token', token({ sub: '8', name: 'Nora' }));
    await page.click('#join');
    await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: WAIT_MS });
    await page.locator('.chat-item', { hasText: 'Prod player' }).waitFor({ timeout: WAIT_MS });
    assertClean(page);
    assertClean(widget);
    await context.close();
  });
});

test('production without SWITCHBOARD_PAGES and SWITCHBOARD_DASHBOARD serves none of the pages', async () => {
  const server = await startServer({
    NODE_ENV: 'production',
    CORS_ORIGIN: 'https://crm.example.com',
    SWITCHBOARD_JWT_SECRET: SECRET,
    SWITCHBOARD_LOG_LEVEL: 'error',
  });
  try {
    for (const p of ['/demo/widget', '/demo/console', '/dashboard', '/dashboard/data', '/assets/sio.js']) {
      const res = await fetch(server.url + p, { headers: { Accept: 'text/html' } });
      assert.equal(res.status, 404, p);
    }
    const res = await fetch(`${server.url}/`, { headers: { Accept: 'text/html' } });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).service, 'switchboard');
    assert.doesNotMatch(server.stdout, /open |dashboard /, 'the banner names no page');
  } finally {
    await server.stop();
  }
});
