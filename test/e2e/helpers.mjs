// Helpers for Switchboard's end-to-end tests: the real binary, the npm
// socket.io-client as the CRM and the widget use it, and expectations that
// wait for events (never a fixed sleep, except the quiet windows that prove
// that nothing arrived).

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { io } from 'socket.io-client';

/** Where the server binary is: SWITCHBOARD_BIN, else ../../bin/switchboard. */
export const BIN = process.env.SWITCHBOARD_BIN
  ? path.resolve(process.env.SWITCHBOARD_BIN)
  : fileURLToPath(new URL('../../bin/switchboard', import.meta.url));

/** How long a quiet window lasts, in ms (E2E_QUIET_MS to change it). */
export const QUIET_MS = Number(process.env.E2E_QUIET_MS ?? 200);

/** How long an expected event may take, in ms. */
export const EVENT_TIMEOUT_MS = 3000;

/** JavaScript's Date#toISOString: UTC with milliseconds. */
export const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The transport modes every contract test runs in. */
export const MODES = {
  websocket: ['websocket'],
  polling: ['polling'],
  upgrade: ['polling', 'websocket'],
};

/** Asserts that ts is a toISOString() timestamp within [from - slack, to + slack]. */
export function assertISO(ts, { from, to, slackMs = 1000, what = 'timestamp' } = {}) {
  assert.equal(typeof ts, 'string', `${what} must be a string, got ${JSON.stringify(ts)}`);
  assert.match(ts, ISO_RE, `${what} must be ISO 8601 UTC with ms`);
  const t = Date.parse(ts);
  assert.ok(Number.isFinite(t), `${what} must parse: ${ts}`);
  if (from !== undefined) {
    assert.ok(t >= from - slackMs, `${what} ${ts} is before ${new Date(from).toISOString()}`);
  }
  if (to !== undefined) {
    assert.ok(t <= to + slackMs, `${what} ${ts} is after ${new Date(to).toISOString()}`);
  }
}

/**
 * Rate limits high enough that no test's burst meets them: the shared
 * servers use these, and only the rate-limit test runs with the defaults
 * (10 messages/s, burst 20; 5 typing events/s, burst 10).
 */
export const HIGH_LIMITS = {
  SWITCHBOARD_MESSAGE_RATE: '1000',
  SWITCHBOARD_MESSAGE_BURST: '1000',
  SWITCHBOARD_TYPING_RATE: '1000',
  SWITCHBOARD_TYPING_BURST: '1000',
};

/** The codes a refused event may be answered with. */
export const ERROR_CODES = [
  'not_joined', 'wrong_role', 'unknown_target', 'invalid_payload', 'invalid_type',
  'too_large', 'rate_limited', 'unauthorized', 'queue_full', 'unavailable',
  // routing (SWITCHBOARD_ROUTING claim or auto)
  'routing_off', 'already_claimed', 'not_yours', 'unknown_operator', 'over_capacity', 'operator_away', 'unknown_chat',
];

/** Signs claims as an HS256 JWT with node's crypto (no JWT library). */
export function signHS256(claims, secret, header = { alg: 'HS256', typ: 'JWT' }) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const data = `${part(header)}.${part(claims)}`;
  const sig = crypto.createHmac('sha256', secret).update(data).digest('base64url');
  return `${data}.${sig}`;
}

// ---------------------------------------------------------------- server

/**
 * Starts the server binary on a free port (PORT=0) bound to 127.0.0.1 and
 * resolves once its banner names the port.
 */
export async function startServer({ env = {}, timeoutMs = 10000 } = {}) {
  const proc = spawn(BIN, [], {
    env: { ...process.env, PORT: '0', SWITCHBOARD_HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  const server = new Server(proc);
  await server.ready(timeoutMs);
  lastServer = server;
  return server;
}

// The server connect() uses when given no url: the last one started.
let lastServer;

// Servers still running are killed if the test process ends early (a
// failed hook, Ctrl-C, a runner's timeout), so that none is left behind.
const running = new Set();
const killRunning = () => {
  for (const p of running) p.kill('SIGKILL');
};
process.once('exit', killRunning);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killRunning();
    process.kill(process.pid, sig);
  });
}

export class Server {
  constructor(proc) {
    this.proc = proc;
    this.stdout = '';
    this.stderr = '';
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => resolve({ code, signal }));
    });
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (d) => { this.stdout += d; });
    proc.stderr.on('data', (d) => { this.stderr += d; });
  }

  ready(timeoutMs) {
    return new Promise((resolve, reject) => {
      const done = (err) => {
        clearTimeout(timer);
        this.proc.stdout.off('data', onData);
        this.proc.off('exit', onExit);
        this.proc.off('error', onError);
        if (err) {
          this.proc.kill('SIGKILL');
          reject(err);
        } else {
          resolve();
        }
      };
      const onData = () => {
        const m = /^\s+listening\s+(\S+):(\d+)\s*$/m.exec(this.stdout);
        if (m) {
          this.host = m[1];
          this.port = Number(m[2]);
          this.url = `http://${this.host}:${this.port}`;
          done();
        }
      };
      const onExit = (code, signal) => done(new Error(
        `server exited before listening (code ${code}, signal ${signal})\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`));
      const onError = (err) => done(new Error(`cannot start ${BIN}: ${err.message}`));
      const timer = setTimeout(() => done(new Error(
        `no "listening" line in the banner after ${timeoutMs} ms\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`)), timeoutMs);
      this.proc.stdout.on('data', onData);
      this.proc.once('exit', onExit);
      this.proc.once('error', onError);
      onData();
    });
  }

  /** Sends SIGTERM and asserts that the process exits 0 within timeoutMs. */
  async stop({ timeoutMs = 15000 } = {}) {
    if (lastServer === this) lastServer = undefined;
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
    }
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    const res = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (res === null) {
      this.proc.kill('SIGKILL');
      assert.fail(`server did not exit within ${timeoutMs} ms of SIGTERM\nstderr:\n${this.stderr}`);
    }
    assert.deepEqual(res, { code: 0, signal: null },
      `server must exit 0 on SIGTERM\nstderr:\n${this.stderr}`);
    return res;
  }

  /** GET (or another method) on the server; resolves with status, headers and parsed JSON. */
  async http(urlPath, init = {}) {
    const res = await fetch(this.url + urlPath, init);
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  async getJSON(urlPath) {
    const res = await this.http(urlPath);
    assert.equal(res.status, 200, `GET ${urlPath}: ${res.text}`);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/, `GET ${urlPath} content-type`);
    assert.ok(res.json !== undefined, `GET ${urlPath} must answer JSON: ${res.text}`);
    return res.json;
  }

  /**
   * Polls GET urlPath until pred(json) holds (a condition, not a fixed
   * sleep), and resolves with that json.
   */
  async waitFor(urlPath, pred, { timeoutMs = 3000, what = urlPath } = {}) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
      last = await this.getJSON(urlPath);
      if (pred(last)) return last;
      if (Date.now() > deadline) {
        assert.fail(`timed out waiting for ${what}; last ${urlPath}: ${JSON.stringify(last)}`);
      }
      await delay(5);
    }
  }

  /** Waits until /stats lists socket id under role ('client' or 'operator'). */
  waitJoined(id, role) {
    const key = role === 'operator' ? 'operators' : 'clients';
    return this.waitFor('/stats', (s) => s[key].some((p) => p.socketId === id),
      { what: `${id} listed as ${role}` });
  }

  /** Waits until /stats no longer lists socket id. */
  waitLeft(id) {
    return this.waitFor('/stats',
      (s) => !s.clients.some((p) => p.socketId === id) && !s.operators.some((p) => p.socketId === id),
      { what: `${id} gone from /stats` });
  }

  /** Waits until /health counts are exactly these. */
  waitCounts({ clients, operators }) {
    return this.waitFor('/health',
      (h) => h.connections.clients === clients && h.connections.operators === operators,
      { what: `${clients} clients and ${operators} operators` });
  }
}

// ---------------------------------------------------------------- sockets

/**
 * Records every event a socket receives, in arrival order. Events are
 * consumed by expectEvent (first unconsumed of that name); expectNothing
 * fails while any is left unconsumed.
 */
export class Recorder {
  constructor(socket, label) {
    this.label = label;
    this.socket = socket;
    this.all = []; // every event, consumed or not: {event, args, at, transport}
    this.pending = []; // not yet consumed by expectEvent
    this.waiters = []; // {name, resolve}
    this.disconnects = []; // reasons
    socket.onAny((event, ...args) => {
      const rec = { event, args, at: Date.now(), transport: socket.io.engine?.transport?.name };
      this.all.push(rec);
      const i = this.waiters.findIndex((w) => w.name === event);
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        w.resolve(rec);
      } else {
        this.pending.push(rec);
      }
    });
    socket.on('disconnect', (reason) => this.disconnects.push(reason));
  }

  take(name, timeoutMs) {
    const i = this.pending.findIndex((r) => r.event === name);
    if (i >= 0) return Promise.resolve(this.pending.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = {
        name,
        resolve: (rec) => {
          clearTimeout(timer);
          resolve(rec);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.label}: no "${name}" within ${timeoutMs} ms; received: ${this.describe(this.all)}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  describe(recs) {
    if (recs.length === 0) return '(nothing)';
    return recs.map((r) => `${r.event} ${JSON.stringify(r.args)}`).join('; ');
  }
}

/**
 * Connects a socket.io-client socket to url (default: the last server
 * started) with these transports, resolves once connected. label names it in failures. In the polling-then-
 * websocket mode, socket.upgraded resolves with the transport's name after
 * the engine's upgrade event.
 */
export function connect(label, transports, { url = lastServer?.url, timeoutMs = 5000, ...opts } = {}) {
  assert.ok(url, 'connect needs the server url');
  const socket = io(url, {
    path: '/chat',
    transports,
    forceNew: true,
    reconnection: false,
    timeout: timeoutMs,
    ...opts,
  });
  socket.label = label;
  socket.rec = new Recorder(socket, label);
  const engine = socket.io.engine;
  if (transports.includes('polling') && transports.includes('websocket')) {
    socket.upgraded = new Promise((resolve) => {
      engine.once('upgrade', () => resolve(engine.transport.name));
    });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`${label}: not connected within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('connect_error');
      socket.transportAtConnect = engine.transport.name;
      socket.sid = socket.id; // socket.id is unset on disconnect; sid stays
      resolve(socket);
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(new Error(`${label}: connect_error: ${err.message}`));
    });
  });
}

/**
 * Resolves with the payload of the next (first unconsumed) event `name` on
 * socket, which must carry exactly one argument.
 */
export async function expectEvent(socket, name, timeoutMs = EVENT_TIMEOUT_MS) {
  const rec = await socket.rec.take(name, timeoutMs);
  const offset = RECOVERY && !VOLATILE.has(name);
  assert.equal(rec.args.length, offset ? 2 : 1,
    `${socket.label}: "${name}" must carry exactly one payload${offset ? ' and its offset' : ''}, got ${JSON.stringify(rec.args)}`);
  if (offset) {
    assert.equal(typeof rec.args[1], 'string', `${socket.label}: "${name}" offset`);
  }
  return rec.args[0];
}

/**
 * Whether the servers this run starts have connection-state recovery on:
 * the default, unless SWITCHBOARD_RECOVERY_WINDOW=0 (the guide's contract
 * exactly). With it, every event but the volatile ones carries its offset
 * as a last argument, which socket.io-client reads and listeners ignore.
 */
export const RECOVERY = (process.env.SWITCHBOARD_RECOVERY_WINDOW ?? '').trim() !== '0';

/** The additive keys a join ack carries with continuity on. */
const CONTINUITY_ACK_KEYS = new Set(['clientId', 'resumeToken']);
const VOLATILE = new Set(['clientTyping', 'operatorTyping', 'chatError']);

/**
 * Expects the next chatError on socket: exactly {code, message, event},
 * for this event, with this code (or one of these codes), and a message.
 */
export async function expectChatError(socket, event, code, what = `${socket.label} ${event}`) {
  const err = await expectEvent(socket, 'chatError');
  assert.deepEqual(Object.keys(err).sort(), ['code', 'event', 'message'], `${what}: chatError keys ${JSON.stringify(err)}`);
  assert.equal(err.event, event, `${what}: chatError.event`);
  assertCode(err.code, code, `${what}: chatError.code`);
  assert.equal(typeof err.message, 'string', `${what}: chatError.message`);
  assert.ok(err.message.length > 0, `${what}: chatError.message is empty`);
  return err;
}

function assertCode(got, want, what) {
  assert.ok(ERROR_CODES.includes(got), `${what}: unknown code ${JSON.stringify(got)}`);
  if (Array.isArray(want)) {
    assert.ok(want.includes(got), `${what}: ${JSON.stringify(got)}, expected one of ${want.join(', ')}`);
  } else if (want !== undefined) {
    assert.equal(got, want, what);
  }
}

/**
 * Emits event with payload and an ack callback; resolves with the ack's
 * one argument (fails if it carries another number, or never comes).
 */
export function emitAck(socket, event, payload, timeoutMs = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(
      `${socket.label}: no ack for "${event}" within ${timeoutMs} ms; received: ${socket.rec.describe(socket.rec.all)}`)), timeoutMs);
    socket.emit(event, payload, (...args) => {
      clearTimeout(timer);
      if (args.length !== 1) {
        reject(new Error(`${socket.label}: the ack for "${event}" must carry one argument, got ${JSON.stringify(args)}`));
      } else {
        resolve(args[0]);
      }
    });
  });
}

/** Asserts an accepted ack: exactly {ok: true, id, timestamp}; returns it. */
export function assertAckOk(reply, { from, to, what = 'ack' } = {}) {
  // With continuity on, a player's join ack adds clientId and resumeToken
  // (docs/EVENTS.md); nothing else is ever added, and with it off nothing.
  const keys = Object.keys(reply ?? {}).filter((k) => !(RECOVERY && CONTINUITY_ACK_KEYS.has(k)));
  assert.deepEqual(keys.sort(), ['id', 'ok', 'timestamp'], `${what}: keys of ${JSON.stringify(reply)}`);
  if (RECOVERY && 'resumeToken' in reply) {
    assert.equal(typeof reply.resumeToken, 'string', `${what}: resumeToken`);
    assert.equal(typeof reply.clientId, 'string', `${what}: clientId`);
  }
  assert.equal(reply.ok, true, `${what}: ok`);
  assert.equal(typeof reply.id, 'string', `${what}: id`);
  assert.ok(reply.id.length > 0, `${what}: id is empty`);
  assertISO(reply.timestamp, { from, to, what: `${what} timestamp` });
  return reply;
}

/** Asserts a refusing ack: exactly {ok: false, error: {code, message}}. */
export function assertAckRefused(reply, code, what = 'ack') {
  assert.deepEqual(Object.keys(reply ?? {}).sort(), ['error', 'ok'], `${what}: keys of ${JSON.stringify(reply)}`);
  assert.equal(reply.ok, false, `${what}: ok`);
  assert.deepEqual(Object.keys(reply.error ?? {}).sort(), ['code', 'message'], `${what}: error keys of ${JSON.stringify(reply)}`);
  assertCode(reply.error.code, code, `${what}: error.code`);
  assert.equal(typeof reply.error.message, 'string', `${what}: error.message`);
  assert.ok(reply.error.message.length > 0, `${what}: error.message is empty`);
  return reply;
}

/**
 * Waits a quiet window and fails if any of the sockets received an event
 * that no expectEvent consumed (before or during the window).
 */
export async function expectNothing(sockets, ms = QUIET_MS) {
  const list = Array.isArray(sockets) ? sockets : [sockets];
  await delay(ms);
  const noisy = list.filter((s) => s.rec.pending.length > 0);
  if (noisy.length > 0) {
    assert.fail('expected nothing, but: ' + noisy
      .map((s) => `${s.label} received ${s.rec.describe(s.rec.pending)}`).join(' | '));
  }
}

/**
 * One test's participants: sockets it connects, joins that wait until the
 * server lists them, and a clean-up that disconnects everything and waits
 * until presence is empty again.
 */
export class Scenario {
  constructor(server, transports) {
    this.server = server;
    this.transports = transports;
    this.sockets = [];
  }

  get upgrading() {
    return this.transports.includes('polling') && this.transports.includes('websocket');
  }

  async connect(label, opts = {}) {
    const s = await connect(label, this.transports, { url: this.server.url, ...opts });
    this.sockets.push(s);
    if (!this.upgrading) {
      assert.equal(s.transportAtConnect, this.transports[0], `${label}: transport at connect`);
    } else {
      assert.ok(['polling', 'websocket'].includes(s.transportAtConnect));
    }
    return s;
  }

  /** Connects and joins as a client; resolves once /stats lists it. */
  async client(label, fields = { name: label }) {
    const s = await this.connect(label);
    s.emit('join', { role: 'client', ...fields });
    await this.server.waitJoined(s.sid, 'client');
    return s;
  }

  /** Connects and joins as an operator; resolves once /stats lists it. */
  async operator(label, fields = { name: label, operatorId: 1 }) {
    const s = await this.connect(label);
    s.emit('join', { role: 'operator', ...fields });
    await this.server.waitJoined(s.sid, 'operator');
    return s;
  }

  /** Disconnects a socket from the client side, waiting until it is gone from /stats. */
  async leave(socket) {
    socket.disconnect();
    await this.server.waitLeft(socket.sid);
  }

  /**
   * Checks what every test must leave true: no event left unconsumed, no
   * socket disconnected by the server, transports as the mode says (in the
   * upgrade mode, every socket still connected has upgraded to websocket).
   */
  async verify() {
    for (const s of this.sockets) {
      assert.deepEqual(s.rec.pending.map((r) => `${r.event} ${JSON.stringify(r.args)}`), [],
        `${s.label}: events nobody expected`);
      assert.deepEqual(s.rec.disconnects.filter((r) => r !== 'io client disconnect'), [],
        `${s.label}: disconnected by the server or the transport`);
      if (!s.connected) continue;
      if (this.upgrading) {
        const name = await Promise.race([s.upgraded, delay(3000, 'no upgrade within 3 s')]);
        assert.equal(name, 'websocket', `${s.label}: upgrade`);
        assert.equal(s.io.engine.transport.name, 'websocket', `${s.label}: transport after upgrade`);
      } else {
        assert.equal(s.io.engine.transport.name, this.transports[0], `${s.label}: transport`);
      }
    }
  }

  /** Disconnects every socket and waits until the server lists nobody. */
  async close() {
    for (const s of this.sockets) s.disconnect();
    await this.server.waitCounts({ clients: 0, operators: 0 });
  }
}

// ---------------------------------------------------------------- upgrade

/**
 * A TCP proxy in front of the server that forwards HTTP (long-polling) at
 * once but holds every WebSocket connection until release(): a client
 * behind it stays on polling, whatever the timing, until the test lets it
 * upgrade.
 */
export async function startUpgradeGate(server) {
  const held = [];
  const conns = new Set();
  let open = false;
  const forward = (down, first) => {
    const up = net.connect(server.port, server.host);
    conns.add(up);
    up.on('close', () => conns.delete(up));
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
    up.write(first);
    down.pipe(up);
    up.pipe(down);
  };
  const proxy = net.createServer((down) => {
    conns.add(down);
    down.on('close', () => conns.delete(down));
    down.once('data', (first) => {
      down.pause(); // pipe() resumes it once forwarded
      const isWS = /^GET [^\r\n]*transport=websocket/.test(first.toString('latin1'));
      if (isWS && !open) {
        held.push(() => forward(down, first));
      } else {
        forward(down, first);
      }
    });
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    /** How many WebSocket connections are waiting. */
    get held() { return held.length; },
    release() {
      open = true;
      for (const go of held.splice(0)) go();
    },
    close() {
      for (const c of conns) c.destroy();
      return new Promise((resolve) => proxy.close(resolve));
    },
  };
}

// ---------------------------------------------------------------- legacy

/**
 * A bare Engine.IO 3 long-polling client, as socket.io-client 2.x speaks it
 * (payloads framed as `<length>:<packet>`, length in UTF-16 units): enough
 * to prove that a legacy widget can join and chat.
 */
export async function eio3Connect(url) {
  const base = `${url}/chat/?EIO=3&transport=polling`;
  let n = 0;
  const decode = (text) => {
    const out = [];
    let i = 0;
    while (i < text.length) {
      const colon = text.indexOf(':', i);
      assert.ok(colon > i, `EIO3 payload framing: ${JSON.stringify(text)}`);
      const len = Number(text.slice(i, colon));
      out.push(text.slice(colon + 1, colon + 1 + len));
      i = colon + 1 + len;
    }
    return out;
  };
  const hs = await fetch(`${base}&t=${n++}`);
  assert.equal(hs.status, 200);
  const [open, ...rest] = decode(await hs.text());
  assert.match(open, /^0\{/);
  const { sid } = JSON.parse(open.slice(1));
  const q = `${base}&sid=${sid}`;
  const queue = [...rest];
  const client = {
    sid,
    /** Resolves with the next Socket.IO packet (engine ping packets answered). */
    async next() {
      for (;;) {
        while (queue.length > 0) {
          const pkt = queue.shift();
          if (pkt === '2') {
            await client.send('3');
            continue;
          }
          if (pkt === '6') continue; // noop
          return pkt;
        }
        const res = await fetch(`${q}&t=${n++}`);
        assert.equal(res.status, 200);
        queue.push(...decode(await res.text()));
      }
    },
    /** Resolves with the payload of the next Socket.IO event, checking its name. */
    async event(name) {
      const pkt = await client.next();
      assert.match(pkt, /^42\[/, `expected an event packet, got ${pkt}`);
      const [ev, ...args] = JSON.parse(pkt.slice(2));
      assert.equal(ev, name);
      assert.equal(args.length, 1);
      return args[0];
    },
    async send(pkt) {
      const res = await fetch(`${q}&t=${n++}`, {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
        body: `${pkt.length}:${pkt}`,
      });
      assert.equal(res.status, 200, `EIO3 POST: ${await res.text()}`);
    },
    emit(event, payload) {
      return client.send('42' + JSON.stringify([event, payload]));
    },
    close() {
      return client.send('1');
    },
  };
  return client;
}

/** A free loopback port (closed again: a race with other processes is possible, and rare). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/**
 * Starts a redis-server without persistence on port (a free one if not given) and resolves once it answers
 * PING, with {port, proc, url}. It is killed when this process exits.
 */
export async function startRedis(port) {
  port ??= await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  process.once('exit', () => proc.kill('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.end('PING\r\n'); });
      s.once('data', (d) => { resolve(d.toString().startsWith('+PONG')); s.destroy(); });
      s.once('error', () => resolve(false));
    });
    if (ok) return { port, proc, url: `redis://127.0.0.1:${port}` };
    await delay(50);
  }
  proc.kill('SIGKILL');
  throw new Error('redis-server did not answer PING');
}

/** Sends one inline command to Redis and resolves with its reply's first line. */
export function redisCommand(port, line) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => s.write(`${line}\r\n`));
    s.once('data', (d) => { resolve(d.toString().split('\r\n')[0]); s.end(); });
    s.once('error', reject);
  });
}

/**
 * Three nodes (n1, n2, n3) of one cluster on a Redis of their own, with env; fn gets
 * {nodes, redis, sockets, operator, player}: operator(label, n, operatorId = label) and player(label, n)
 * join on node n over websocket and resolve once every live node lists the socket. Afterwards the nodes
 * are stopped (their clean exit checked), or killed when `kill` (tests that kill some of them); with
 * DUMP set, a failure prints every node's log.
 */
export async function withCluster(env, fn, { kill = false } = {}) {
  const redis = await startRedis();
  const nodes = await Promise.all(['n1', 'n2', 'n3'].map((id) => startServer({
    env: { ...HIGH_LIMITS, ...env, REDIS_URL: redis.url, SWITCHBOARD_NODE_ID: id },
  })));
  const sockets = [];
  try {
    for (const n of nodes) {
      await n.waitFor('/health', (h) => h.status === 'ok' && h.cluster?.nodes === 3, { timeoutMs: 10000, what: '3 nodes' });
    }
    const alive = () => nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
    const join = async (label, n, payload) => {
      const s = await connect(label, ['websocket'], { url: nodes[n].url });
      sockets.push(s);
      const ack = await emitAck(s, 'join', payload);
      assert.equal(ack.ok, true, `${label} join: ${JSON.stringify(ack)}`);
      const key = payload.role === 'operator' ? 'operators' : 'clients';
      for (const node of alive()) {
        await node.waitFor('/stats', (st) => st[key].some((p) => p.socketId === s.sid), { what: `${label} listed on ${node.url}` });
      }
      return s;
    };
    const operator = (label, n, operatorId = label) => join(label, n, { role: 'operator', name: label, operatorId });
    const player = (label, n) => join(label, n, { role: 'client', name: label });
    await fn({ nodes, redis, sockets, operator, player });
  } catch (err) {
    if (process.env.DUMP) for (const n of nodes) console.error(`==== ${n.url}\n${n.stderr}`);
    throw err;
  } finally {
    for (const s of sockets) s.disconnect();
    if (kill) for (const n of nodes) n.proc.kill('SIGKILL');
    else await Promise.all(nodes.map((n) => n.stop()));
    redis.proc.kill('SIGKILL');
  }
}
