// Continuity end to end: connection-state recovery (blips, a transport that
// never comes back, an explicit disconnect, a half-open connection taken
// over), the offline queue, events sent just before a join, page reloads,
// a deploy (SIGTERM) under live clients, and recovery turned off; with the
// unmodified npm socket.io-client, in each transport mode where it matters.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import {
  EVENT_TIMEOUT_MS, HIGH_LIMITS, MODES, assertISO, connect, emitAck, expectNothing, signHS256, startServer,
} from './helpers.mjs';

// The client reconnects by itself, quickly (the default waits 1 to 5 s).
const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 };
const VOLATILE = new Set(['clientTyping', 'operatorTyping', 'chatError']);
const CLIENT_SECRET = 'switchboard e2e player secret, 32+ characters';
// In an expected payload: any non-empty string (a server-made timestamp or message).
const ANY = Symbol('any non-empty string');
const fill = (want, got) => {
  if (!want || typeof want !== 'object' || !got || typeof got !== 'object') return got;
  const out = { ...got };
  for (const [k, v] of Object.entries(want)) {
    if (v === ANY && typeof got[k] === 'string' && got[k].length > 0) out[k] = ANY;
  }
  return out;
};

// ---------------------------------------------------------------- helpers

/**
 * Expects exactly these events, in this order, as the next ones socket
 * received (whatever their names): [[event, payload], ...]. With offsets
 * (recovery on), every non-volatile event must carry a non-empty offset
 * string as its last argument; without, one argument only.
 */
async function expectSeq(socket, expected, { offsets = true, timeoutMs = EVENT_TIMEOUT_MS } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (socket.rec.pending.length < expected.length) {
    if (Date.now() > deadline) {
      assert.fail(`${socket.label}: expected ${expected.map(([e, p]) => `${e} ${JSON.stringify(p)}`).join('; ')}` +
        `\n  but received only: ${socket.rec.describe(socket.rec.pending)}\n  all: ${socket.rec.describe(socket.rec.all)}`);
    }
    await delay(5);
  }
  const got = socket.rec.pending.splice(0, expected.length);
  assert.deepEqual(got.map((r, i) => [r.event, fill(expected[i]?.[1], r.args[0])]), expected,
    `${socket.label}: events in order (all received: ${socket.rec.describe(socket.rec.all)})`);
  for (const r of got) {
    const withOffset = offsets && !VOLATILE.has(r.event);
    assert.equal(r.args.length, withOffset ? 2 : 1,
      `${socket.label}: "${r.event}" must carry its payload${withOffset ? ' and an offset' : ' alone'}: ${JSON.stringify(r.args)}`);
    if (withOffset) {
      assert.equal(typeof r.args[1], 'string', `${socket.label}: "${r.event}" offset`);
      assert.ok(r.args[1].length > 0, `${socket.label}: "${r.event}" offset is empty`);
    }
  }
  return got;
}

/** Every offset socket received is distinct: nothing was delivered twice. */
function assertNoDuplicates(socket) {
  const offs = socket.rec.all.filter((r) => !VOLATILE.has(r.event)).map((r) => r.args.at(-1));
  assert.equal(new Set(offs).size, offs.length, `${socket.label}: an offset came twice: ${socket.rec.describe(socket.rec.all)}`);
}

/** An accepted ack: exactly {ok:true, id, timestamp} plus these extra fields. */
function assertAck(reply, extra = {}, what = 'ack') {
  assert.deepEqual(Object.keys(reply ?? {}).sort(), [...new Set(['id', 'ok', 'timestamp', ...Object.keys(extra)])].sort(),
    `${what}: keys of ${JSON.stringify(reply)}`);
  assert.equal(reply.ok, true, `${what}: ok`);
  assert.equal(typeof reply.id, 'string', `${what}: id`);
  assert.ok(reply.id.length > 0, `${what}: id is empty`);
  // A timestamp the sender chose is kept as sent; the server's own is now.
  const own = extra.timestamp === undefined;
  assertISO(reply.timestamp, own ? { from: Date.now() - 60000, to: Date.now(), what: `${what} timestamp` } : { what: `${what} timestamp` });
  for (const [k, v] of Object.entries(extra)) assert.equal(reply[k], v, `${what}: ${k} in ${JSON.stringify(reply)}`);
  return reply;
}

/** A refusing ack: exactly {ok:false, error:{code, message}} with this code. */
function assertRefused(reply, code, what = 'ack') {
  assert.deepEqual(Object.keys(reply ?? {}).sort(), ['error', 'ok'], `${what}: keys of ${JSON.stringify(reply)}`);
  assert.equal(reply.ok, false, `${what}: ok`);
  assert.deepEqual(Object.keys(reply.error ?? {}).sort(), ['code', 'message'], `${what}: error of ${JSON.stringify(reply)}`);
  assert.equal(reply.error.code, code, `${what}: code in ${JSON.stringify(reply)}`);
  assert.ok(typeof reply.error.message === 'string' && reply.error.message.length > 0, `${what}: message`);
  return reply;
}

/** Resolves on socket's next 'connect' (fails after timeoutMs). */
function nextConnect(socket, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off('connect', on);
      reject(new Error(`${socket.label}: did not reconnect within ${timeoutMs} ms (disconnects: ${socket.rec.disconnects.join(', ')})`));
    }, timeoutMs);
    const on = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.once('connect', on);
  });
}

const opMsg = (to, message, operatorId = 1, operatorName = 'Uno') => ({ to, type: 'text', message, operatorId, operatorName });
const seenByClient = (message, timestamp, operatorName = 'Uno') => ({ type: 'text', message, operatorName, timestamp });
const seenByOthers = (clientId, message, timestamp, operatorId = 1, operatorName = 'Uno') =>
  ({ clientId, operatorId, operatorName, type: 'text', message, timestamp });
const incoming = (from, message, timestamp) => ({ from, type: 'text', message, timestamp });

/**
 * A TCP proxy in front of a server that, while held, holds every new
 * Engine.IO handshake (a GET on /chat/ without sid) until release(); every
 * other request (a polling POST, an upgrade) goes through at once. A player
 * behind it whose transport drops tries to reconnect by itself, and is kept
 * away for exactly as long as a test needs (the client opens one TCP
 * connection per polling request: xmlhttprequest-ssl uses no agent).
 */
async function startGate(server) {
  let holding = false;
  const held = [];
  const conns = new Set();
  const forward = (down, first) => {
    if (down.destroyed) return;
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
    down.on('error', () => {});
    down.once('data', (first) => {
      down.pause();
      const line = first.toString('latin1').split('\r\n', 1)[0];
      const handshake = /^GET \/chat\/\?/.test(line) && !/[?&]sid=/.test(line);
      if (holding && handshake) held.push(() => forward(down, first));
      else forward(down, first);
    });
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    hold() { holding = true; },
    /** Waits until a reconnection attempt is held (the client is trying by itself). */
    async waitHeld(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (held.length === 0) {
        if (Date.now() > deadline) assert.fail(`no reconnection attempt reached the gate within ${timeoutMs} ms`);
        await delay(5);
      }
    },
    release() {
      holding = false;
      for (const go of held.splice(0)) go();
    },
    close() {
      holding = false;
      held.length = 0;
      for (const c of conns) c.destroy();
      return new Promise((resolve) => proxy.close(resolve));
    },
  };
}

/**
 * One test's participants and clean-up: every socket is disconnected (a
 * raw connection says DISCONNECT first), gates opened, and the servers it
 * used list nobody again.
 */
class Ctx {
  constructor(transports) {
    this.transports = transports;
    this.sockets = [];
    this.raws = [];
    this.servers = new Set();
    this.gates = new Set();
  }

  /** A socket.io-client socket to server (through gate if given). */
  async connect(label, server, { gate, transports = this.transports, ...opts } = {}) {
    this.servers.add(server);
    if (gate) this.gates.add(gate);
    const s = await connect(label, transports, { url: gate ? gate.url : server.url, ...opts });
    this.sockets.push(s);
    return s;
  }

  /** An operator joined on server (listed in /stats). */
  async operator(label, server, opts = {}) {
    const s = await this.connect(label, server, opts);
    s.emit('join', { role: 'operator', name: label, operatorId: opts.operatorId ?? 1 });
    await server.waitJoined(s.sid, 'operator');
    return s;
  }

  /** A player joined on server, reconnecting by itself; s.joinAck is its join's ack. */
  async player(label, server, { fields = { name: label }, ...opts } = {}) {
    const s = await this.connect(label, server, { ...RECONNECT, ...opts });
    s.joinAck = await emitAck(s, 'join', { role: 'client', ...fields });
    assert.equal(s.joinAck?.ok, true, `${label}: join ack ${JSON.stringify(s.joinAck)}`);
    await server.waitJoined(s.sid, 'client');
    return s;
  }

  async cleanup() {
    for (const g of this.gates) g.release();
    for (const r of this.raws) {
      if (r.readyState === WebSocket.OPEN) r.send('41');
      r.close();
    }
    for (const s of this.sockets) s.disconnect();
    for (const srv of this.servers) {
      await srv.waitFor('/health', (h) => h.connections.clients === 0 && h.connections.operators === 0,
        { timeoutMs: 5000, what: 'nobody joined after the test' });
    }
  }
}

function ctxTest(name, transports, fn) {
  test(name, async () => {
    const ctx = new Ctx(transports);
    let passed = false;
    try {
      await fn(ctx);
      passed = true;
    } finally {
      try {
        await ctx.cleanup();
      } catch (err) {
        if (passed) throw err;
      }
    }
  });
}

/** Blips player's transport while gate holds its return; run(during) acts while it is away. */
async function blip(player, gate, ops, during) {
  gate.hold();
  player.io.engine.close();
  for (const op of ops) await expectSeq(op, [['chatAway', { clientId: player.sid }]]);
  const res = await during();
  await gate.waitHeld();
  const back = nextConnect(player);
  gate.release();
  await back;
  assert.equal(player.recovered, true, `${player.label}: recovered`);
  assert.equal(player.id, player.sid, `${player.label}: same socket id after the blip`);
  return res;
}

// ---------------------------------------------------------------- per mode

for (const [mode, transports] of Object.entries(MODES)) {
  describe(`continuity over ${mode} (${transports.join(' then ')})`, () => {
    let server; // recovery window 2m (the default)
    let short; // window 1s
    let gate;
    before(async () => {
      [server, short] = await Promise.all([
        startServer({ env: { ...HIGH_LIMITS, SWITCHBOARD_RECOVERY_WINDOW: '2m' } }),
        startServer({ env: { ...HIGH_LIMITS, SWITCHBOARD_RECOVERY_WINDOW: '1s' } }),
      ]);
      gate = await startGate(server);
    });
    after(async () => {
      await gate?.close();
      await Promise.all([server?.stop(), short?.stop()]);
    });

    ctxTest('blip: the player recovers its id and exactly the events it missed, in order, once; operators get chatAway then chatBack, never chatEnded or newChat', transports, async (ctx) => {
      const op1 = await ctx.operator('op1', server);
      const op2 = await ctx.operator('op2', server, { operatorId: 2 });
      const p = await ctx.player('p', server, { gate });
      for (const op of [op1, op2]) await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
      assert.equal(typeof p._pid, 'string', 'CONNECT carries pid');
      assert.ok(p._pid.length > 0, 'pid is empty');

      // One event seen live: the player has an offset.
      const a0 = assertAck(await emitAck(op1, 'operatorMessage', opMsg(p.sid, 'antes')), {}, 'live reply');
      await expectSeq(p, [['operatorMessage', seenByClient('antes', a0.timestamp)]]);
      await expectSeq(op2, [['operatorBroadcast', seenByOthers(p.sid, 'antes', a0.timestamp)]]);
      assert.equal(typeof p._lastOffset, 'string');

      const acks = await blip(p, gate, [op1, op2], async () => {
        // Volatile: a typing indicator while away is not kept for replay.
        op1.emit('operatorTyping', { to: p.sid, isTyping: true });
        const out = [];
        for (const m of ['uno', 'dos', 'tres']) {
          out.push(assertAck(await emitAck(op1, 'operatorMessage', opMsg(p.sid, m)), { away: true }, `reply "${m}" while away`));
        }
        return out;
      });
      await expectSeq(p, acks.map((a, i) => ['operatorMessage', seenByClient(['uno', 'dos', 'tres'][i], a.timestamp)]));
      await expectSeq(op1, [['chatBack', { clientId: p.sid }]]);
      await expectSeq(op2, [
        ...acks.map((a, i) => ['operatorBroadcast', seenByOthers(p.sid, ['uno', 'dos', 'tres'][i], a.timestamp)]),
        ['chatBack', { clientId: p.sid }],
      ]);

      // Live again both ways.
      const a4 = assertAck(await emitAck(p, 'clientMessage', { type: 'text', message: 'de vuelta' }), {}, 'message after recovery');
      for (const op of [op1, op2]) await expectSeq(op, [['incomingMessage', incoming(p.sid, 'de vuelta', a4.timestamp)]]);
      const a5 = assertAck(await emitAck(op2, 'operatorMessage', opMsg(p.sid, 'sigo', 2, 'Dos')), {}, 'reply after recovery');
      await expectSeq(p, [['operatorMessage', seenByClient('sigo', a5.timestamp, 'Dos')]]);
      await expectSeq(op1, [['operatorBroadcast', seenByOthers(p.sid, 'sigo', a5.timestamp, 2, 'Dos')]]);
      await expectNothing([p, op1, op2]);
      assertNoDuplicates(p);
      assert.equal(p.rec.disconnects.length, 1, `one disconnect: ${p.rec.disconnects}`);
      assert.notEqual(p.rec.disconnects[0], 'io server disconnect');
      const stats = await server.getJSON('/stats');
      assert.deepEqual(stats.clients.map((c) => c.socketId), [p.sid]);
    });

    ctxTest('5 blips in a row: each recovers, each missed reply arrives once, nothing twice', transports, async (ctx) => {
      const op = await ctx.operator('op', server);
      const p = await ctx.player('p', server, { gate });
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
      for (let i = 1; i <= 5; i++) {
        const ack = await blip(p, gate, [op], async () =>
          assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, `away ${i}`)), { away: true }, `reply ${i}`));
        await expectSeq(p, [['operatorMessage', seenByClient(`away ${i}`, ack.timestamp)]]);
        await expectSeq(op, [['chatBack', { clientId: p.sid }]]);
        const m = assertAck(await emitAck(p, 'clientMessage', { type: 'text', message: `back ${i}` }), {}, `message ${i}`);
        await expectSeq(op, [['incomingMessage', incoming(p.sid, `back ${i}`, m.timestamp)]]);
      }
      await expectNothing([p, op]);
      assertNoDuplicates(p);
      assert.deepEqual(p.rec.all.map((r) => r.args[0].message), [1, 2, 3, 4, 5].map((i) => `away ${i}`));
      assert.equal(p.rec.disconnects.length, 5);
      assert.equal(op.rec.all.filter((r) => r.event === 'chatAway').length, 5);
      assert.equal(op.rec.all.filter((r) => r.event === 'chatBack').length, 5);
    });

    ctxTest('blip before the player saw any event (pid alone): recovers and gets the reply sent while away', transports, async (ctx) => {
      const op = await ctx.operator('op', server);
      const p = await ctx.player('p', server, { gate });
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
      assert.equal(p.rec.all.length, 0);
      assert.equal(p._lastOffset, undefined, 'no offset yet');
      const ack = await blip(p, gate, [op], async () =>
        assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'hola')), { away: true }, 'reply while away'));
      await expectSeq(p, [['operatorMessage', seenByClient('hola', ack.timestamp)]]);
      await expectSeq(op, [['chatBack', { clientId: p.sid }]]);
      await expectNothing([p, op]);
    });

    ctxTest('a transport that never comes back: chatAway, then exactly one chatEnded {reason: disconnect} after the 1 s window, not before', transports, async (ctx) => {
      const op = await ctx.operator('op', short);
      const p = await ctx.player('p', short);
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
      p.io.reconnection(false);
      const t0 = Date.now();
      p.io.engine.close();
      await expectSeq(op, [['chatAway', { clientId: p.sid }]]);
      assert.ok(Date.now() - t0 < 900, `chatAway took ${Date.now() - t0} ms`);
      const ack = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, '¿sigues?')), { away: true }, 'reply while away');
      assert.ok(ack);
      // Still listed while away.
      assert.ok((await short.getJSON('/stats')).clients.some((c) => c.socketId === p.sid), 'listed while away');
      await expectSeq(op, [['chatEnded', { clientId: p.sid, reason: 'disconnect' }]], { timeoutMs: 3000 });
      const took = op.rec.all.at(-1).at - t0;
      assert.ok(took >= 950, `chatEnded came ${took} ms after the close, before the 1 s window`);
      assert.ok(took <= 2500, `chatEnded came ${took} ms after the close`);
      await short.waitLeft(p.sid);
      assertRefused(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'tarde')), 'unknown_target', 'reply after the window');
      await expectNothing([op, p]);
      assert.equal(op.rec.all.filter((r) => r.event === 'chatEnded').length, 1);
    });

    ctxTest('socket.disconnect(): chatEnded {reason: disconnect} at once, no chatAway', transports, async (ctx) => {
      const op = await ctx.operator('op', server);
      const p = await ctx.player('p', server);
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
      const t0 = Date.now();
      p.disconnect();
      await expectSeq(op, [['chatEnded', { clientId: p.sid, reason: 'disconnect' }]]);
      assert.ok(op.rec.all.at(-1).at - t0 < 1000, `chatEnded after ${op.rec.all.at(-1).at - t0} ms`);
      await server.waitLeft(p.sid);
      await expectNothing([op, p]);
      assert.deepEqual(p.rec.disconnects, ['io client disconnect']);
    });

    ctxTest('offline queue: messages sent while no operator is joined are acked queued and go to the next operator to join, after its newChat, in order, once', transports, async (ctx) => {
      const p = await ctx.player('p', server);
      const texts = ['¿hay alguien?', 'hola', 'con hora'];
      const acks = [];
      for (const [i, message] of texts.entries()) {
        const payload = { type: 'text', message, ...(i === 2 ? { timestamp: '2026-01-01T00:00:00.000Z' } : {}) };
        acks.push(assertAck(await emitAck(p, 'clientMessage', payload), { queued: true, ...(payload.timestamp ? { timestamp: payload.timestamp } : {}) }, `queued ${i}`));
      }
      const op1 = await ctx.operator('op1', server);
      await expectSeq(op1, [
        ['newChat', { clientId: p.sid, username: 'p' }],
        ...texts.map((m, i) => ['incomingMessage', incoming(p.sid, m, acks[i].timestamp)]),
      ]);
      const op2 = await ctx.operator('op2', server, { operatorId: 2 });
      await expectSeq(op2, [['newChat', { clientId: p.sid, username: 'p' }]]);
      await expectNothing([p, op1, op2]);
      const live = assertAck(await emitAck(p, 'clientMessage', { type: 'text', message: 'ya' }), {}, 'message with operators');
      for (const op of [op1, op2]) await expectSeq(op, [['incomingMessage', incoming(p.sid, 'ya', live.timestamp)]]);
      await expectNothing([p, op1, op2]);
    });

    ctxTest('offline queue: an operator back from away gets what queued meanwhile, once', transports, async (ctx) => {
      const op = await ctx.operator('op', server, { gate, ...RECONNECT });
      const p = await ctx.player('p', server);
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
      gate.hold();
      op.io.engine.close();
      await delay(150); // the server reads the close (a frame, or a POST through the gate)
      const acks = [];
      for (const m of ['uno', 'dos']) {
        acks.push(assertAck(await emitAck(p, 'clientMessage', { type: 'text', message: m }), { queued: true }, `"${m}" while the operator is away`));
      }
      await gate.waitHeld();
      const back = nextConnect(op);
      gate.release();
      await back;
      assert.equal(op.recovered, true, 'operator recovered');
      assert.equal(op.id, op.sid);
      await expectSeq(op, acks.map((a, i) => ['incomingMessage', incoming(p.sid, ['uno', 'dos'][i], a.timestamp)]));
      await expectNothing([op, p]);
      assertNoDuplicates(op);
    });

    ctxTest('a clientMessage emitted in the same tick before join is applied after the join, not refused', transports, async (ctx) => {
      const op = await ctx.operator('op', server);
      const s = await ctx.connect('early', server);
      const msgAck = new Promise((resolve) => s.emit('clientMessage', { type: 'text', message: 'primero' }, resolve));
      const joinAck = new Promise((resolve) => s.emit('join', { role: 'client', name: 'early' }, resolve));
      const [m, j] = await Promise.all([msgAck, joinAck]);
      assert.equal(j?.ok, true, `join ack ${JSON.stringify(j)}`);
      assertAck(m, {}, 'the early message');
      await expectSeq(op, [
        ['newChat', { clientId: s.sid, username: 'early' }],
        ['incomingMessage', incoming(s.sid, 'primero', m.timestamp)],
      ]);
      await expectNothing([op, s]);
    });
  });
}

// ---------------------------------------------------------------- websocket only

describe('continuity: limits, takeover, late join (websocket)', () => {
  let server;
  before(async () => {
    server = await startServer({ env: { ...HIGH_LIMITS, SWITCHBOARD_RECOVERY_WINDOW: '2m' } });
  });
  after(async () => {
    await server?.stop();
  });
  const ws = MODES.websocket;

  ctxTest('offline queue bound (default 100 per chat): the 101st is refused queue_full (ack or chatError), nothing dropped silently', ws, async (ctx) => {
    const p = await ctx.player('p', server);
    const acks = await Promise.all(Array.from({ length: 100 }, (_, i) =>
      emitAck(p, 'clientMessage', { type: 'text', message: `m${i}` })));
    acks.forEach((a, i) => assertAck(a, { queued: true }, `queued ${i}`));
    assertRefused(await emitAck(p, 'clientMessage', { type: 'text', message: 'm100' }), 'queue_full', '101st');
    p.emit('clientMessage', { type: 'text', message: 'm101' });
    await expectSeq(p, [['chatError', { code: 'queue_full', message: ANY, event: 'clientMessage' }]]);
    const op = await ctx.operator('op', server);
    await expectSeq(op, [
      ['newChat', { clientId: p.sid, username: 'p' }],
      ...acks.map((a, i) => ['incomingMessage', incoming(p.sid, `m${i}`, a.timestamp)]),
    ]);
    await expectNothing([op, p]);
  });

  ctxTest('never a gap: a player who missed more than the log keeps (SWITCHBOARD_RECOVERY_MAX_FRAMES=3) comes back fresh, and its chat ends at once', ws, async (ctx) => {
    const small = await startServer({ env: { ...HIGH_LIMITS, SWITCHBOARD_RECOVERY_WINDOW: '2m', SWITCHBOARD_RECOVERY_MAX_FRAMES: '3' } });
    const g = await startGate(small);
    try {
      const op = await ctx.operator('op', small);
      const p = await ctx.player('p', small, { gate: g });
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
      g.hold();
      p.io.engine.close();
      await expectSeq(op, [['chatAway', { clientId: p.sid }]]);
      for (let i = 1; i <= 3; i++) {
        assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, `r${i}`)), { away: true }, `reply ${i} (kept)`);
      }
      await expectNothing(op);
      const fourth = await emitAck(op, 'operatorMessage', opMsg(p.sid, 'r4'));
      assert.ok(fourth?.ok === false || fourth?.away === true, `4th reply: ${JSON.stringify(fourth)}`);
      await expectSeq(op, [['chatEnded', { clientId: p.sid, reason: 'disconnect' }]]);
      await g.waitHeld();
      const back = nextConnect(p);
      g.release();
      await back;
      assert.notEqual(p.recovered, true, 'must not recover with a gap');
      assert.notEqual(p.id, p.sid, 'a fresh socket id');
      await expectNothing([op, p]);
      assert.deepEqual(p.rec.all, [], 'none of the replies reached the fresh socket');
      p.disconnect();
      await small.waitCounts({ clients: 0, operators: 1 });
    } finally {
      await ctx.cleanup();
      ctx.servers.delete(small);
      await g.close();
      await small.stop();
    }
  });

  ctxTest('events sent more than 1 s before any join are refused not_joined', ws, async (ctx) => {
    const s = await ctx.connect('never', server);
    const t0 = Date.now();
    const reply = await emitAck(s, 'clientMessage', { type: 'text', message: 'x' }, 3000);
    assertRefused(reply, 'not_joined', 'held message');
    assert.ok(Date.now() - t0 >= 900, `refused after ${Date.now() - t0} ms, before the 1 s hold`);
    await expectNothing(s);
  });

  ctxTest('half-open takeover: a raw connection with the pid and last offset gets the missed events, then CONNECT with the same id; the old one is closed without DISCONNECT', ws, async (ctx) => {
    const op = await ctx.operator('op', server);
    const p = await ctx.player('p', server, { reconnection: false });
    await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
    const a1 = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'uno')), {}, 'first reply');
    await expectSeq(p, [['operatorMessage', seenByClient('uno', a1.timestamp)]]);
    const pid = p._pid;
    const offset = p._lastOffset;
    assert.equal(typeof pid, 'string');
    assert.equal(typeof offset, 'string');
    // A reply the raw connection missed (the first one saw it).
    const a2 = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'dos')), {}, 'second reply');
    await expectSeq(p, [['operatorMessage', seenByClient('dos', a2.timestamp)]]);

    const raw = new WebSocket(`${server.url.replace(/^http/, 'ws')}/chat/?EIO=4&transport=websocket`);
    ctx.raws.push(raw);
    const frames = [];
    raw.on('message', (d) => {
      const t = d.toString();
      if (t === '2') raw.send('3');
      else frames.push(t);
    });
    const nextFrame = async (what) => {
      const deadline = Date.now() + EVENT_TIMEOUT_MS;
      while (frames.length === 0) {
        if (Date.now() > deadline) assert.fail(`raw: no frame (${what})`);
        await delay(5);
      }
      return frames.shift();
    };
    await new Promise((resolve, reject) => { raw.once('open', resolve); raw.once('error', reject); });
    assert.match(await nextFrame('open'), /^0\{/);
    const pDown = new Promise((resolve) => p.once('disconnect', resolve));
    raw.send('40' + JSON.stringify({ pid, offset }));
    const missed = await nextFrame('missed event');
    assert.match(missed, /^42\[/, `raw: first frame ${missed}`);
    const [evName, payload, off] = JSON.parse(missed.slice(2));
    assert.equal(evName, 'operatorMessage');
    assert.deepEqual(payload, seenByClient('dos', a2.timestamp));
    assert.equal(typeof off, 'string');
    const conn = await nextFrame('CONNECT');
    assert.equal(conn, `40${JSON.stringify({ sid: p.sid, pid })}`, 'raw: CONNECT');
    // The first connection is closed by the server, without a DISCONNECT.
    assert.equal(await Promise.race([pDown, delay(3000, 'still connected')]), 'transport close');
    assert.deepEqual(p.rec.disconnects, ['transport close']);

    // Operators heard of nothing; the next reply reaches the raw connection.
    await expectNothing([op, p]);
    const a3 = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'tres')), {}, 'reply after takeover');
    const f3 = JSON.parse((await nextFrame('reply after takeover')).slice(2));
    assert.deepEqual(f3.slice(0, 2), ['operatorMessage', seenByClient('tres', a3.timestamp)]);
    raw.send('42' + JSON.stringify(['clientMessage', { type: 'text', message: 'desde raw' }]));
    const im = await expectSeq(op, [['incomingMessage', { from: p.sid, type: 'text', message: 'desde raw', timestamp: ANY }]]);
    assertISO(im[0].args[0].timestamp);
    await expectNothing([op, p]);
    assert.deepEqual(frames, []);
    assert.ok((await server.getJSON('/stats')).clients.some((c) => c.socketId === p.sid));
  });
});

// ---------------------------------------------------------------- reload

describe('continuity: a reloaded page takes its conversation back', () => {
  let server;
  before(async () => {
    server = await startServer({ env: { ...HIGH_LIMITS, SWITCHBOARD_RECOVERY_WINDOW: '2m', SWITCHBOARD_CLIENT_SECRET: CLIENT_SECRET } });
  });
  after(async () => {
    await server?.stop();
  });
  const ws = MODES.websocket;

  /** Closes the page: the transport drops without a DISCONNECT and never returns. */
  const closePage = (s) => {
    s.io.reconnection(false);
    s.io.engine.close();
  };

  for (const [mode, transports] of [['websocket', MODES.websocket], ['polling', MODES.polling]]) {
    ctxTest(`resumeToken (${mode}): same clientId, normal join ack, chatBack and no second newChat, replies sent during the reload delivered`, transports, async (ctx) => {
      const op = await ctx.operator('op', server);
      const p = await ctx.player('p', server);
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
      assert.deepEqual(Object.keys(p.joinAck).sort(), ['clientId', 'id', 'ok', 'resumeToken', 'timestamp'], `join ack ${JSON.stringify(p.joinAck)}`);
      assert.equal(p.joinAck.clientId, p.sid);
      assert.equal(typeof p.joinAck.resumeToken, 'string');
      assert.ok(p.joinAck.resumeToken.length >= 16, 'resumeToken too short to be unguessable');

      closePage(p);
      await expectSeq(op, [['chatAway', { clientId: p.sid }]]);
      const a1 = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'durante la recarga')), { away: true }, 'reply during reload');

      const p2 = await ctx.connect('p2', server, { auth: { resumeToken: p.joinAck.resumeToken } });
      assert.equal(p2.id, p.sid, 'the reloaded page has the old clientId');
      const j2 = await emitAck(p2, 'join', { role: 'client', name: 'p' });
      assert.equal(j2?.ok, true, `second join ack ${JSON.stringify(j2)}`);
      assert.equal(j2.clientId, p.sid);
      await expectSeq(p2, [['operatorMessage', seenByClient('durante la recarga', a1.timestamp)]]);
      await expectSeq(op, [['chatBack', { clientId: p.sid }]]);
      const a2 = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'después')), {}, 'reply after reload');
      await expectSeq(p2, [['operatorMessage', seenByClient('después', a2.timestamp)]]);
      const m = assertAck(await emitAck(p2, 'clientMessage', { type: 'text', message: 'recargué' }), {}, 'message after reload');
      await expectSeq(op, [['incomingMessage', incoming(p.sid, 'recargué', m.timestamp)]]);
      await expectNothing([op, p, p2]);
      assert.deepEqual((await server.getJSON('/stats')).clients.map((c) => c.socketId), [p.sid]);
    });
  }

  ctxTest('reload while the old page is still open: the new socket takes the conversation over silently', ws, async (ctx) => {
    const op = await ctx.operator('op', server);
    const p = await ctx.player('p', server, { reconnection: false });
    await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
    const pDown = new Promise((resolve) => p.once('disconnect', resolve));
    const p2 = await ctx.connect('p2', server, { auth: { resumeToken: p.joinAck.resumeToken } });
    assert.equal(p2.id, p.sid, 'the reloaded page has the old clientId');
    assert.equal(await Promise.race([pDown, delay(3000, 'old page still connected')]), 'transport close');
    const j2 = await emitAck(p2, 'join', { role: 'client', name: 'p' });
    assert.equal(j2?.ok, true, `second join ack ${JSON.stringify(j2)}`);
    await expectNothing([op, p, p2]);
    const a = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'sigues ahí')), {}, 'reply after reload');
    await expectSeq(p2, [['operatorMessage', seenByClient('sigues ahí', a.timestamp)]]);
    await expectNothing([op, p, p2]);
    assert.deepEqual((await server.getJSON('/stats')).clients.map((c) => c.socketId), [p.sid]);
  });

  ctxTest('a blip whose new handshake carries another player\'s token does not recover (the token is verified again)', ws, async (ctx) => {
    const srv = await startServer({ env: { ...HIGH_LIMITS, SWITCHBOARD_RECOVERY_WINDOW: '1s', SWITCHBOARD_CLIENT_SECRET: CLIENT_SECRET } });
    const g = await startGate(srv);
    try {
      const now = Math.floor(Date.now() / 1000);
      const op = await ctx.operator('op', srv);
      const p = await ctx.player('p', srv, { gate: g, auth: { token: signHS256({ sub: 'player-a', username: 'ana', exp: now + 600 }, CLIENT_SECRET) } });
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'ana' }]]);
      const a = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'privado')), {}, 'reply to ana');
      await expectSeq(p, [['operatorMessage', seenByClient('privado', a.timestamp)]]);
      p.auth = { token: signHS256({ sub: 'player-b', username: 'beto', exp: now + 600 }, CLIENT_SECRET) };
      g.hold();
      p.io.engine.close();
      await expectSeq(op, [['chatAway', { clientId: p.sid }]]);
      assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'solo para ana')), { away: true }, 'reply while away');
      await g.waitHeld();
      const back = nextConnect(p);
      g.release();
      await back;
      assert.notEqual(p.recovered, true, 'another identity must not recover');
      assert.notEqual(p.id, p.sid, 'a fresh socket id');
      await expectNothing(p);
      assert.equal(p.rec.all.length, 1, `nothing of ana's conversation reached beto: ${p.rec.describe(p.rec.all)}`);
      await expectSeq(op, [['chatEnded', { clientId: p.sid, reason: 'disconnect' }]], { timeoutMs: 4000 });
      await expectNothing([op, p]);
      p.disconnect();
    } finally {
      await ctx.cleanup();
      ctx.servers.delete(srv);
      await g.close();
      await srv.stop();
    }
  });

  ctxTest('a wrong or unknown resumeToken gives a fresh socket with a new id, no error', ws, async (ctx) => {
    const op = await ctx.operator('op', server);
    const p = await ctx.player('p', server);
    await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]]);
    const token = p.joinAck.resumeToken;
    assert.equal(typeof token, 'string');
    for (const [label, bad] of [['wrong', token.slice(0, -1) + (token.at(-1) === 'A' ? 'B' : 'A')], ['unknown', 'no-such-token-0123456789abcdef']]) {
      const s = await ctx.connect(label, server, { auth: { resumeToken: bad } });
      assert.notEqual(s.id, p.sid, `${label}: must not take p's conversation`);
      assert.equal(s.recovered, false);
      const j = await emitAck(s, 'join', { role: 'client', name: label });
      assert.equal(j?.ok, true, `${label}: join ${JSON.stringify(j)}`);
      await expectSeq(op, [['newChat', { clientId: s.sid, username: label }]]);
    }
    assert.ok(p.connected, 'the original player is untouched');
    const a = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'solo a p')), {}, 'reply to p');
    await expectSeq(p, [['operatorMessage', seenByClient('solo a p', a.timestamp)]]);
    await expectNothing(ctx.sockets);
  });

  ctxTest('a player token with the same sub resumes the clientId; another sub, the same username or phone do not', ws, async (ctx) => {
    const now = Math.floor(Date.now() / 1000);
    const tok = (sub, username) => signHS256({ sub, username, exp: now + 600 }, CLIENT_SECRET);
    const op = await ctx.operator('op', server);
    const p = await ctx.player('p', server, { auth: { token: tok('player-7', 'ana') }, fields: { name: 'Ana', phone: '600' } });
    await expectSeq(op, [['newChat', { clientId: p.sid, username: 'ana', phone: '600' }]]);
    closePage(p);
    await expectSeq(op, [['chatAway', { clientId: p.sid }]]);

    // Another sub with the same username, and no token with the same username and phone: new chats.
    const other = await ctx.connect('other', server, { auth: { token: tok('player-8', 'ana') } });
    assert.notEqual(other.id, p.sid, 'another sub must not resume');
    assert.equal((await emitAck(other, 'join', { role: 'client', name: 'Ana' }))?.ok, true);
    await expectSeq(op, [['newChat', { clientId: other.sid, username: 'ana' }]]);
    const anon = await ctx.connect('anon', server);
    assert.notEqual(anon.id, p.sid, 'username/phone must not resume');
    assert.equal((await emitAck(anon, 'join', { role: 'client', name: 'Ana', username: 'ana', phone: '600' }))?.ok, true);
    await expectSeq(op, [['newChat', { clientId: anon.sid, username: 'ana', phone: '600' }]]);

    // A new page with a fresh token of the same sub: the same conversation.
    const p2 = await ctx.connect('p2', server, { auth: { token: signHS256({ sub: 'player-7', username: 'ana', exp: now + 900 }, CLIENT_SECRET) } });
    assert.equal(p2.id, p.sid, 'same sub resumes the clientId');
    assert.equal((await emitAck(p2, 'join', { role: 'client', name: 'Ana', phone: '600' }))?.ok, true);
    await expectSeq(op, [['chatBack', { clientId: p.sid }]]);
    const a = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'hola Ana')), {}, 'reply after reload');
    await expectSeq(p2, [['operatorMessage', seenByClient('hola Ana', a.timestamp)]]);
    await expectNothing(ctx.sockets);
  });
});

// ---------------------------------------------------------------- recovery off

describe('continuity off (SWITCHBOARD_RECOVERY_WINDOW=0)', () => {
  let server;
  before(async () => {
    server = await startServer({ env: { ...HIGH_LIMITS, SWITCHBOARD_RECOVERY_WINDOW: '0' } });
  });
  after(async () => {
    await server?.stop();
  });

  for (const [mode, transports] of Object.entries(MODES)) {
    ctxTest(`${mode}: no pid, no offsets; a blip ends the chat at once and reconnects as a fresh socket`, transports, async (ctx) => {
      const op = await ctx.operator('op', server);
      const p = await ctx.player('p', server);
      await expectSeq(op, [['newChat', { clientId: p.sid, username: 'p' }]], { offsets: false });
      assert.equal(p._pid, undefined, 'no pid in CONNECT');
      assertAck(p.joinAck, {}, 'join ack without resumeToken');
      const a = assertAck(await emitAck(op, 'operatorMessage', opMsg(p.sid, 'hola')), {}, 'reply');
      await expectSeq(p, [['operatorMessage', seenByClient('hola', a.timestamp)]], { offsets: false });

      const back = nextConnect(p);
      const t0 = Date.now();
      p.io.engine.close();
      await expectSeq(op, [['chatEnded', { clientId: p.sid, reason: 'disconnect' }]], { offsets: false });
      assert.ok(op.rec.all.at(-1).at - t0 < 1000, 'chatEnded at once');
      await back;
      assert.notEqual(p.recovered, true, 'not recovered');
      assert.notEqual(p.id, p.sid, 'a fresh socket id');
      await expectNothing([op, p]);
      // As a widget does: join again, a new chat.
      p.emit('join', { role: 'client', name: 'p' });
      await expectSeq(op, [['newChat', { clientId: p.id, username: 'p' }]], { offsets: false });
      await expectNothing([op, p]);
    });
  }
});

// ---------------------------------------------------------------- deploy

describe('continuity: SIGTERM under live clients (a deploy)', () => {
  test('30 live clients see a transport close, never "io server disconnect", and come back by themselves to a new server on the same port', async (t) => {
    const port = await new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    const env = { ...HIGH_LIMITS, PORT: String(port) };
    let srv = await startServer({ env });
    const url = `http://127.0.0.1:${port}`;
    const all = [];
    const make = (label, role, i, transports) => {
      const s = io(url, { path: '/chat', forceNew: true, ...(transports ? { transports } : {}) });
      s.label = label;
      s.connects = 0;
      s.reasons = [];
      s.on('connect', () => {
        s.connects++;
        if (!s.recovered) {
          s.emit('join', role === 'client' ? { role, name: label } : { role, name: label, operatorId: i });
        }
      });
      s.on('disconnect', (r) => s.reasons.push(r));
      all.push(s);
    };
    for (let i = 0; i < 10; i++) make(`widget${i}`, 'client', i);
    for (let i = 0; i < 10; i++) make(`crm${i}`, 'operator', i);
    for (let i = 0; i < 5; i++) make(`ws-widget${i}`, 'client', i, ['websocket']);
    for (let i = 0; i < 5; i++) make(`ws-crm${i}`, 'operator', 100 + i, ['websocket']);
    const waitAll = async (n, timeoutMs, what) => {
      const deadline = Date.now() + timeoutMs;
      while (!all.every((s) => s.connects >= n && s.connected)) {
        if (Date.now() > deadline) {
          assert.fail(`${what}: not connected: ${all.filter((s) => !(s.connects >= n && s.connected)).map((s) => `${s.label} (${s.connects} connects, disconnects ${s.reasons.join('/')})`).join(', ')}`);
        }
        await delay(20);
      }
    };
    try {
      await waitAll(1, 10000, 'first connect');
      await srv.waitFor('/health', (h) => h.connections.clients === 15 && h.connections.operators === 15, { timeoutMs: 5000 });
      // Let the default clients upgrade, as real ones would have.
      await delay(300);
      const t0 = Date.now();
      await srv.stop();
      const stopMs = Date.now() - t0;
      const deadline = Date.now() + 5000;
      while (all.some((s) => s.reasons.length === 0) && Date.now() < deadline) await delay(20);
      for (const s of all) {
        assert.equal(s.reasons.length, 1, `${s.label}: one disconnect, got ${JSON.stringify(s.reasons)}`);
        assert.ok(['transport close', 'transport error'].includes(s.reasons[0]),
          `${s.label}: disconnect reason ${JSON.stringify(s.reasons[0])} (stop took ${stopMs} ms)`);
      }
      srv = await startServer({ env });
      const t1 = Date.now();
      await waitAll(2, 10000, 'reconnect to the new server');
      const backMs = Date.now() - t1;
      await srv.waitFor('/health', (h) => h.connections.clients === 15 && h.connections.operators === 15,
        { timeoutMs: 3000, what: `15 clients and 15 operators joined again (${backMs} ms after the start)` });
      t.diagnostic(`SIGTERM to exit: ${stopMs} ms; new server to all 30 reconnected: ${backMs} ms`);
      for (const s of all) {
        assert.equal(s.connects, 2, `${s.label}: connects`);
        assert.ok(!s.reasons.includes('io server disconnect'), `${s.label}: ${s.reasons}`);
      }
    } finally {
      for (const s of all) s.disconnect();
      await srv.stop();
    }
  });
});
