// Helpers for the browser suite: the real server binary, the system's
// Chromium driven by playwright-core, a PNG made here, screenshots.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

/** The server binary: SWITCHBOARD_BIN, else bin/switchboard. */
export const BIN = path.resolve(process.env.SWITCHBOARD_BIN ?? path.join(root, 'bin/switchboard'));
/** The load tool: LOADTEST_BIN, else bin/loadtest. */
export const LOADTEST = path.resolve(process.env.LOADTEST_BIN ?? path.join(root, 'bin/loadtest'));
/** Where screenshots go (ignored by git). */
export const ARTIFACTS = path.join(here, 'artifacts');
/** With UPDATE_DOCS_IMG=1 the screenshots also replace the README's, in docs/img. */
const DOCS_IMG = process.env.UPDATE_DOCS_IMG === '1' ? path.join(root, 'docs/img') : null;

/** How long an expected change on a page may take, in ms. */
export const WAIT_MS = 5000;

/** A free loopback port (for a server whose own origin must be configured first). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts the server (PORT 0 unless env says) and resolves once its banner names the port. */
export async function startServer(env = {}, { timeoutMs = 10000 } = {}) {
  const proc = spawn(BIN, [], {
    env: { ...process.env, PORT: '0', SWITCHBOARD_HOST: '127.0.0.1', SWITCHBOARD_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" line after ${timeoutMs} ms\n${stdout}\n${stderr}`)), timeoutMs);
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = /listening\s+\S+:(\d+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening\n${stdout}\n${stderr}`));
    });
    proc.once('error', (err) => reject(new Error(`cannot start ${BIN}: ${err.message}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    port,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      let timer;
      const res = await Promise.race([exited, new Promise((r) => {
        timer = setTimeout(() => r(null), 15000);
      })]);
      clearTimeout(timer);
      if (res === null) {
        proc.kill('SIGKILL');
        assert.fail(`server did not stop within 15 s of SIGTERM\n${stderr}`);
      }
      assert.deepEqual(res, { code: 0, signal: null }, `server must exit 0\n${stderr}`);
    },
  };
}

/** A console tab on the server at url, joined as name/id, its chat list waiting. */
export async function joinConsole(context, url, name, id) {
  const page = await open(context, `${url}/demo/console`);
  await page.fill('#op-name', name);
  await page.fill('#op-id', String(id));
  await page.click('#join');
  await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: WAIT_MS });
  return page;
}

/** A widget tab on the server at url whose player has joined. */
export async function joinWidget(context, url, { name, username, phone }) {
  const page = await open(context, `${url}/demo/widget`);
  await page.fill('#name', name);
  if (username) await page.fill('#username', username);
  if (phone) await page.fill('#phone', phone);
  await page.click('#start');
  await page.locator('#status', { hasText: /^connected/ }).waitFor({ timeout: WAIT_MS });
  return page;
}

/** A redis-server of the test's own on a free loopback port; stop() kills it. */
export async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const spawned = new Promise((resolve, reject) => {
    proc.once('spawn', resolve);
    proc.once('error', (err) => reject(new Error(`redis-server: ${err.message} (apt-get install -y redis-server)`)));
  });
  await spawned;
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => s.end('PING\r\n'));
      s.once('data', (d) => {
        resolve(d.toString().startsWith('+PONG'));
        s.destroy();
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return { url: `redis://127.0.0.1:${port}`, stop: () => proc.kill('SIGKILL') };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  throw new Error('redis-server did not answer PING');
}

/** Launches the system's Chromium (CHROMIUM_PATH, else chromium on PATH). */
export async function launch() {
  const executablePath = process.env.CHROMIUM_PATH ?? findChromium();
  return chromium.launch({
    executablePath,
    headless: true,
    // root in CI and containers: Chromium's sandbox needs user namespaces.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
}

function findChromium() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
      const p = path.join(dir, name);
      if (fs.existsSync(p)) return p;
    }
  }
  throw new Error('no Chromium found: apt-get install -y chromium, or set CHROMIUM_PATH');
}

/**
 * Opens a page and records what goes wrong on it: uncaught errors and
 * console errors (a CSP violation is one). assertClean(page) checks them.
 */
export async function open(context, url, { allow = [] } = {}) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !allow.some((re) => re.test(msg.text()))) page.problems.push(`console: ${msg.text()}`);
  });
  await page.goto(url);
  return page;
}

export function assertClean(page) {
  assert.deepEqual(page.problems, [], `problems on ${page.url()}`);
}

/** Saves a screenshot as an artefact (and, with UPDATE_DOCS_IMG=1, into docs/img). */
export async function screenshot(page, name, { docs = true } = {}) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  if (DOCS_IMG && docs) {
    fs.mkdirSync(DOCS_IMG, { recursive: true });
    fs.copyFileSync(file, path.join(DOCS_IMG, `${name}.png`));
  }
  return file;
}

/** A w×h PNG of one colour with a darker diagonal, made here (no image files in the repo). */
export function makePNG(w = 48, h = 32, [r, g, b] = [47, 111, 237]) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0; // filter: none
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      const dark = Math.abs(x * h - y * w) < w ? 0.4 : 1;
      raw[o] = r * dark;
      raw[o + 1] = g * dark;
      raw[o + 2] = b * dark;
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * A token whose signature no longer matches: its first character changed.
 * (Not its last: of an HS256 signature's last character only 4 bits count,
 * and a changed one may read as the same signature; see spareBits.)
 */
export function tamper(token) {
  const i = token.lastIndexOf('.') + 1;
  return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
}

/**
 * The same token with its HS256 signature's spare bits set: the last of its
 * 43 characters changed to the next, which a lenient base64url decoder
 * reads as the same bytes. The server must refuse it, as Node's does.
 */
export function spareBits(token) {
  const i = B64URL.indexOf(token.at(-1));
  return token.slice(0, -1) + B64URL[i + 1];
}

/** Signs claims as an HS256 JWT with node's crypto. */
export function signHS256(claims, secret) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const data = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${data}.${crypto.createHmac('sha256', secret).update(data).digest('base64url')}`;
}
