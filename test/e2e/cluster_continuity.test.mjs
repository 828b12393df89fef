// Continuity across nodes: a player whose node is killed (kill -9) or
// stopped (SIGTERM) recovers on another node with the unmodified npm
// socket.io-client (same socket id, recovered, exactly the events it
// missed); operators see chatAway and chatBack, no chatEnded and no second
// newChat; a Redis restarted empty gives fresh sessions, never a wrong
// replay; a killed node's player away past the window ends in exactly one
// chatEnded. A redis-server of the test's own on a free loopback port.
// Skipped when redis-server is not installed (.ci/run installs it).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { HIGH_LIMITS, connect, emitAck, expectEvent, expectNothing, startServer, freePort, startRedis, signHS256, redisCommand } from './helpers.mjs';

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
// socket.io-client's own default: polling first, then the upgrade.
const DEFAULT_TRANSPORTS = ['polling', 'websocket'];
const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 };
// Short heartbeats: a dead node is noticed within DeadAfter plus two
// heartbeats (2 + 2 x 0.3 s), with a margin for a loaded machine.
const BEAT = { SWITCHBOARD_CLUSTER_HEARTBEAT: '300ms', SWITCHBOARD_CLUSTER_DEAD_AFTER: '2s' };
const NOTICED_MS = 5000;
// The operators' feed stream (the default key prefix).
const FEED = 'switchboard:feed';

/** Resolves on socket's next 'connect'. */
function nextConnect(socket, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${socket.label}: did not reconnect within ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The events `name` socket received so far, payloads only. */
const all = (socket, name) => socket.rec.all.filter((r) => r.event === name).map((r) => r.args[0]);

const opMsg = (to, message) => ({ to, type: 'text', message, operatorId: 1, operatorName: 'Uno' });

describe('continuity across nodes', { skip: hasRedis ? false : 'redis-server is not installed' }, () => {
  let redis;
  const servers = [];
  const sockets = [];

  before(async () => {
    redis = await startRedis();
  });

  after(async () => {
    for (const s of sockets) s.close();
    for (const n of servers) n.proc.kill('SIGKILL');
    redis?.proc.kill('SIGKILL');
  });

  /** p's clientMessage with its ack, or ack null after ms. */
  function sendText(p, text, ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ text, ack: null }), ms);
      p.emit('clientMessage', { type: 'text', message: text }, (ack) => {
        clearTimeout(timer);
        resolve({ text, ack });
      });
    });
  }

  async function nodes(ids, env = {}) {
    // Each test starts from an empty Redis: an earlier test's chats, queue
    // and operators' loads (kept there for the recovery window) would
    // otherwise reach this one's operators.
    await redisCommand(redis.port, 'FLUSHALL');
    const out = await Promise.all(ids.map((id) => startServer({
      env: { ...HIGH_LIMITS, REDIS_URL: redis.url, SWITCHBOARD_NODE_ID: id, SWITCHBOARD_RECOVERY_WINDOW: '60s', ...BEAT, ...env },
    })));
    servers.push(...out);
    for (const n of out) {
      await n.waitFor('/health', (h) => h.cluster?.redis === 'ok' && h.cluster?.nodes >= ids.length, { timeoutMs: 10000, what: 'cluster up' });
    }
    return out;
  }

  /**
   * An operator on node a and a player on node b, joined, the operator told
   * of the player. By default the player reconnects by itself and the
   * operator does not; opReconnects and playerReconnects say otherwise.
   */
  async function chat(a, b, label, { opReconnects = false, playerReconnects = true } = {}) {
    const op = await connect(`${label}-op`, ['websocket'], { url: a.url, ...(opReconnects ? RECONNECT : {}) });
    sockets.push(op);
    op.emit('join', { role: 'operator', name: 'Uno', operatorId: 1 });
    await a.waitJoined(op.sid, 'operator');
    const p = await connect(`${label}-player`, ['websocket'], { url: b.url, ...(playerReconnects ? RECONNECT : {}) });
    sockets.push(p);
    p.emit('join', { role: 'client', name: 'Bob', username: 'bob' });
    assert.equal((await expectEvent(op, 'newChat')).clientId, p.sid);
    return { op, p };
  }

  /** op sends message to p and awaits its ack. */
  async function say(op, p, message) {
    const ack = await emitAck(op, 'operatorMessage', opMsg(p.sid, message));
    assert.equal(ack.ok, true, `ack of ${message}: ${JSON.stringify(ack)}`);
    return ack;
  }

  /** p sends message, acknowledged ok, and op gets it. */
  async function playerSays(p, op, message) {
    assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message })).ok, true, `ack of ${message}`);
    assert.equal((await expectEvent(op, 'incomingMessage')).message, message);
  }

  /** The operatorMessage texts p received, in order. */
  const texts = (p) => all(p, 'operatorMessage').map((m) => m.message);

  async function recoversElsewhere(kill) {
    const [n1, n2] = await nodes(['k1', 'k2']);
    const { op, p } = await chat(n2, n1, kill);
    const id = p.sid;
    await say(op, p, 'one');
    await say(op, p, 'two');
    await expectEvent(p, 'operatorMessage');
    await expectEvent(p, 'operatorMessage');

    const t0 = Date.now();
    if (kill === 'kill') {
      n1.proc.kill('SIGKILL');
      await n1.exited;
    } else {
      await n1.stop();
    }
    // Acknowledged while the player's node is gone: kept for it.
    await say(op, p, 'three');
    assert.deepEqual(await expectEvent(op, 'chatAway', NOTICED_MS), { clientId: id });
    const awayMs = Date.now() - t0;
    await say(op, p, 'four');

    // The player's own reconnection attempts now reach the other node.
    const back = nextConnect(p, 10000);
    p.io.uri = n2.url;
    await back;
    const recoveredMs = Date.now() - t0;
    assert.equal(p.recovered, true, 'recovered on the other node');
    assert.equal(p.id, id, 'same socket id');
    assert.deepEqual(await expectEvent(op, 'chatBack'), { clientId: id });
    await expectEvent(p, 'operatorMessage');
    await expectEvent(p, 'operatorMessage');
    assert.deepEqual(texts(p), ['one', 'two', 'three', 'four'], 'every acknowledged message once, in order');

    // The conversation goes on, with the same clientId for operators.
    p.emit('clientMessage', { type: 'text', message: 'still here' });
    const m = await expectEvent(op, 'incomingMessage');
    assert.equal(m.from, id);
    await say(op, p, 'five');
    await expectEvent(p, 'operatorMessage');
    assert.deepEqual(texts(p), ['one', 'two', 'three', 'four', 'five']);
    const offs = p.rec.all.filter((r) => r.event === 'operatorMessage').map((r) => r.args.at(-1));
    assert.equal(new Set(offs).size, offs.length, 'no offset twice');
    await expectNothing([op, p]);
    assert.deepEqual(all(op, 'chatEnded'), [], 'no chatEnded');
    assert.equal(all(op, 'newChat').length, 1, 'no second newChat');
    const st = await n2.getJSON('/stats');
    assert.ok(st.clients.some((c) => c.socketId === id && c.node === 'k2'), 'listed on the node that took it over');
    p.close();
    op.close();
    await n2.stop();
    return { awayMs, recoveredMs };
  }

  test('kill -9 of the player\'s node: it recovers on another node, every acknowledged message once', async () => {
    const t = await recoversElsewhere('kill');
    console.log(`# kill -9: operators saw chatAway after ${t.awayMs} ms; the player recovered ${t.recoveredMs} ms after the kill`);
  });

  test('SIGTERM of the player\'s node: it recovers on another node, every acknowledged message once', async () => {
    const t = await recoversElsewhere('term');
    console.log(`# SIGTERM: operators saw chatAway after ${t.awayMs} ms; the player recovered ${t.recoveredMs} ms after the signal`);
  });

  test('a blip that reconnects to another live node: taken over there, the old node lets it go quietly', async () => {
    const [n1, n2] = await nodes(['b1', 'b2'], { SWITCHBOARD_RECOVERY_WINDOW: '2s' });
    const { op, p } = await chat(n2, n1, 'blip');
    const id = p.sid;
    await say(op, p, 'one');
    await expectEvent(p, 'operatorMessage');
    p.io.uri = n2.url;
    const back = nextConnect(p, 10000);
    p.io.engine.close();
    await back;
    assert.equal(p.recovered, true);
    assert.equal(p.id, id);
    assert.deepEqual(await expectEvent(op, 'chatBack'), { clientId: id });
    // chatAway comes if the old node noticed the drop before the takeover.
    assert.ok(all(op, 'chatAway').length <= 1);
    op.rec.pending = op.rec.pending.filter((r) => r.event !== 'chatAway');
    await say(op, p, 'two');
    await expectEvent(p, 'operatorMessage');
    // Past the old node's window: its session went with the takeover, so no chat ends.
    await expectNothing([op, p], 2500);
    assert.deepEqual(all(op, 'chatEnded'), []);
    assert.equal(all(op, 'newChat').length, 1);
    assert.deepEqual(texts(p), ['one', 'two']);
    for (const n of [n1, n2]) {
      await n.waitFor('/stats', (s) => s.clients.length === 1 && s.clients[0].socketId === id && s.clients[0].node === 'b2', { what: 'listed once, on b2' });
    }
    op.close();
    p.close();
    await Promise.all([n1.stop(), n2.stop()]);
  });

  test('an acknowledgement waits for the store: none is ok while Redis is paused, and every ok one is delivered once', async () => {
    const [n1, n2] = await nodes(['a1', 'a2']);
    const { op, p } = await chat(n2, n1, 'ackstore');
    await say(op, p, 'one');
    await expectEvent(p, 'operatorMessage');

    // Redis stops answering (a stalled or lost store): the write cannot
    // be confirmed, so the message is not acknowledged as sent.
    redis.proc.kill('SIGSTOP');
    const t0 = Date.now();
    let paused;
    try {
      paused = await emitAck(op, 'operatorMessage', opMsg(p.sid, 'two'), 8000);
    } finally {
      redis.proc.kill('SIGCONT');
    }
    const answeredMs = Date.now() - t0;
    assert.equal(paused.ok, false, `ack while Redis was paused: ${JSON.stringify(paused)}`);
    assert.equal(paused.error.code, 'unavailable');
    for (const n of [n1, n2]) {
      await n.waitFor('/health', (h) => h.cluster?.redis === 'ok', { timeoutMs: 15000, what: 'redis back' });
    }
    await say(op, p, 'three');
    const deadline = Date.now() + 5000;
    while (!texts(p).includes('three') && Date.now() < deadline) await delay(50);
    const got = texts(p);
    // 'two' was refused: it may have reached the player (the paused Redis
    // ran it when it woke) or not, but never twice; the rest exactly once.
    assert.deepEqual(got.filter((t) => t !== 'two'), ['one', 'three'], `delivered: ${got}`);
    assert.ok(got.filter((t) => t === 'two').length <= 1, `delivered: ${got}`);
    console.log(`# ack while Redis paused: refused 'unavailable' after ${answeredMs} ms; 'two' delivered ${got.filter((t) => t === 'two').length} time(s)`);
    op.close();
    p.close();
    await Promise.all([n1.stop(), n2.stop()]);
  });

  test('a player\'s acknowledgement waits for the feed: while Redis is paused, every ok one reaches the other node\'s operator once, the rest are unavailable', async () => {
    const [n1, n2] = await nodes(['q1', 'q2']);
    const { op, p } = await chat(n2, n1, 'pfeed');
    const local = await connect('pfeed-op1', ['websocket'], { url: n1.url });
    sockets.push(local);
    local.emit('join', { role: 'operator', name: 'Dos', operatorId: 2 });
    await n1.waitJoined(local.sid, 'operator');
    await expectEvent(local, 'newChat');

    // A steady stream of messages, each with its ack, while Redis stops
    // answering every client for 2 s (its commands wait, then run).
    const acks = [];
    const send = (text) => acks.push(sendText(p, text, 15000));
    let i = 0;
    for (; i < 10; i++, await delay(25)) send(`m${i}`);
    assert.equal(await redisCommand(redis.port, 'CLIENT PAUSE 2000 ALL'), '+OK');
    const pausedAt = Date.now();
    for (; Date.now() - pausedAt < 4500; i++, await delay(25)) send(`m${i}`);
    for (const n of [n1, n2]) {
      await n.waitFor('/health', (h) => h.cluster?.redis === 'ok', { timeoutMs: 15000, what: 'redis back' });
    }
    for (; i < 400 && Date.now() - pausedAt < 9000; i++, await delay(25)) send(`m${i}`);
    const results = await Promise.all(acks);
    const ok = results.filter((r) => r.ack?.ok === true).map((r) => r.text);
    const refused = results.filter((r) => r.ack?.ok !== true);
    for (const r of refused) {
      assert.equal(r.ack?.ok, false, `${r.text}: an answer within 15 s: ${JSON.stringify(r.ack)}`);
      assert.equal(r.ack.error?.code, 'unavailable', `${r.text}: ${JSON.stringify(r.ack)}`);
    }

    const got = () => all(op, 'incomingMessage').map((m) => m.message);
    for (const deadline = Date.now() + 8000; !ok.every((t) => got().includes(t)) && Date.now() < deadline;) await delay(50);
    const seen = got();
    const missing = ok.filter((t) => !seen.includes(t));
    assert.deepEqual(missing, [], `acknowledged but never delivered to the other node's operator (of ${ok.length} ok)`);
    const twice = seen.filter((t, k) => seen.indexOf(t) !== k);
    assert.deepEqual(twice, [], 'nothing delivered twice');
    const order = seen.map((t) => Number(t.slice(1)));
    assert.deepEqual(order, [...order].sort((a, b) => a - b), 'in the order sent');
    // The player's own node's operator got every message at once, as before.
    assert.equal(all(local, 'incomingMessage').length, results.length);
    assert.ok(refused.length > 0, 'the pause refused some messages');
    assert.ok(ok.length > results.length / 2, `most were acknowledged: ${ok.length} of ${results.length}`);
    const refusedArrived = refused.filter((r) => seen.includes(r.text)).length;
    console.log(`# player's messages while Redis paused 2 s: ${ok.length} ok (each delivered once on the other node), ${refused.length} unavailable (${refusedArrived} of them arrived anyway, once)`);
    for (const s of [op, p, local]) s.close();
    await Promise.all([n1.stop(), n2.stop()]);
  });

  /**
   * The player p's node n1 is killed while its messages wait for a stalled
   * Redis: every message acknowledged ok still reaches op (on n2, `who`)
   * once; some were never answered.
   */
  async function killWithWritesWaiting(n1, n2, op, p, who) {
    const acks = [];
    for (let i = 0; i < 5; i++) assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: `a${i}` })).ok, true);
    // Redis stalls: the node's writes wait; then it is killed with them.
    assert.equal(await redisCommand(redis.port, 'CLIENT PAUSE 1500 ALL'), '+OK');
    for (let i = 0; i < 20; i++, await delay(10)) acks.push(sendText(p, `b${i}`, 8000));
    n1.proc.kill('SIGKILL');
    await n1.exited;
    const results = await Promise.all(acks);
    const ok = ['a0', 'a1', 'a2', 'a3', 'a4', ...results.filter((r) => r.ack?.ok === true).map((r) => r.text)];
    const got = () => all(op, 'incomingMessage').map((m) => m.message);
    for (const deadline = Date.now() + 5000; !ok.every((t) => got().includes(t)) && Date.now() < deadline;) await delay(50);
    const seen = got();
    assert.deepEqual(ok.filter((t) => !seen.includes(t)), [], `acknowledged but never delivered to ${who}: ${ok}`);
    assert.deepEqual(seen.filter((t, k) => seen.indexOf(t) !== k), [], 'nothing delivered twice');
    const unanswered = results.filter((r) => r.ack === null).length;
    assert.ok(unanswered > 0, 'some messages were never acknowledged: the node died first');
    console.log(`# node killed with writes waiting (${who}): ${ok.length - 5} of 20 acknowledged, ${unanswered} never answered, ${seen.filter((t) => t.startsWith('b')).length} delivered`);
    p.close();
    op.close();
    await n2.waitFor('/health', (h) => h.cluster?.nodes === 1, { timeoutMs: NOTICED_MS, what: 'the killed node known dead' });
    await n2.stop();
  }

  test('a player\'s node killed while its messages wait for Redis: every ok one still reaches the other node\'s operator once', async () => {
    const [n1, n2] = await nodes(['z1', 'z2']);
    const { op, p } = await chat(n2, n1, 'pkill');
    await killWithWritesWaiting(n1, n2, op, p, 'the other node\'s operator');
  });

  test('auto routing: a player\'s node killed while its messages to its owner on another node wait for Redis: every ok one arrives once', async () => {
    const [n1, n2] = await nodes(['r1', 'r2'], { SWITCHBOARD_ROUTING: 'auto' });
    const { op, p } = await chat(n2, n1, 'rkill');
    for (const deadline = Date.now() + 5000; all(p, 'operatorAssigned').length === 0 && Date.now() < deadline;) await delay(20);
    assert.equal(all(p, 'operatorAssigned').length, 1, 'the chat was assigned to the operator on the other node');
    await killWithWritesWaiting(n1, n2, op, p, 'the owner on the other node');
  });

  test('operators\' feed across a Redis blip: subscriptions cut mid-conversation, every message once and in order', async () => {
    const [n1, n2] = await nodes(['f1', 'f2']);
    const { op, p } = await chat(n2, n1, 'feed');
    const other = await connect('feed-op1', ['websocket'], { url: n1.url });
    sockets.push(other);
    other.emit('join', { role: 'operator', name: 'Dos', operatorId: 2 });
    await n1.waitJoined(other.sid, 'operator');
    await expectEvent(other, 'newChat');
    const sent = [];
    let kills = 0;
    for (let i = 0; i < 40; i++) {
      if (i % 10 === 5) {
        // Every node's subscription is cut: what is published until it
        // is back never reaches it on the channel.
        const reply = await redisCommand(redis.port, 'CLIENT KILL TYPE pubsub');
        kills += Number(reply.slice(1));
      }
      const text = `m${i}`;
      const ack = await emitAck(p, 'clientMessage', { type: 'text', message: text });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      sent.push(text);
      await delay(15);
    }
    assert.ok(kills >= 8, `subscriptions cut: ${kills}`);
    const deadline = Date.now() + 8000;
    const got = () => all(op, 'incomingMessage').map((m) => m.message);
    while (got().length < sent.length && Date.now() < deadline) await delay(50);
    assert.deepEqual(got(), sent, 'the other node\'s operator: every message once, in order');
    assert.deepEqual(all(other, 'incomingMessage').map((m) => m.message), sent, 'the local operator');
    for (const s of [op, other]) s.rec.pending = [];
    // Operators' own broadcasts cross too, and never come back to the sender.
    await say(op, p, 'reply');
    assert.equal((await expectEvent(other, 'operatorBroadcast')).message, 'reply');
    await expectNothing([op], 300);
    assert.equal(all(op, 'operatorBroadcast').length, 0);
    for (const s of [op, p, other]) s.close();
    await Promise.all([n1.stop(), n2.stop()]);
  });

  test('a page reloaded on another node after its node was killed resumes by its resumeToken', async () => {
    const [n1, n2] = await nodes(['l1', 'l2']);
    const op = await connect('reload-op', ['websocket'], { url: n2.url });
    sockets.push(op);
    op.emit('join', { role: 'operator', name: 'Uno', operatorId: 1 });
    await n2.waitJoined(op.sid, 'operator');
    const p = await connect('reload-page1', ['websocket'], { url: n1.url });
    sockets.push(p);
    const j1 = await emitAck(p, 'join', { role: 'client', name: 'Bob', username: 'bob' });
    assert.equal(typeof j1.resumeToken, 'string', JSON.stringify(j1));
    const id = p.id;
    assert.equal((await expectEvent(op, 'newChat')).clientId, id);
    await say(op, p, 'one');
    await expectEvent(p, 'operatorMessage');

    // The page goes (no goodbye), then its node dies; a reply meanwhile is kept.
    p.io.engine.close();
    assert.deepEqual(await expectEvent(op, 'chatAway'), { clientId: id });
    assert.equal((await say(op, p, 'two')).away, true);
    await delay(700); // a heartbeat or two: the node stores what its page confirmed
    n1.proc.kill('SIGKILL');
    await n1.exited;

    const p2 = await connect('reload-page2', ['websocket'], { url: n2.url, auth: { resumeToken: j1.resumeToken } });
    sockets.push(p2);
    assert.equal(p2.id, id, 'the reloaded page has the old clientId');
    const j2 = await emitAck(p2, 'join', { role: 'client', name: 'Bob', username: 'bob' });
    assert.equal(j2.ok, true, JSON.stringify(j2));
    assert.equal(j2.clientId, id);
    assert.deepEqual(await expectEvent(op, 'chatBack'), { clientId: id });
    for (const deadline = Date.now() + 3000; !texts(p2).includes('two') && Date.now() < deadline;) await delay(20);
    await delay(100);
    const got = texts(p2);
    p2.rec.pending = [];
    // What its client never confirmed reading comes again; 'two' exactly once.
    assert.ok(['two', 'one,two'].includes(got.join(',')), `the reloaded page got ${got}`);
    op.rec.pending = op.rec.pending.filter((r) => r.event !== 'chatAway');
    await say(op, p2, 'three');
    await expectEvent(p2, 'operatorMessage');
    assert.deepEqual(texts(p2), [...got, 'three']);
    await expectNothing([op, p2], 500);
    assert.equal(all(op, 'newChat').length, 1, 'no second newChat');
    assert.deepEqual(all(op, 'chatEnded'), []);
    await n2.waitFor('/stats', (st) => st.clients.length === 1 && st.clients[0].socketId === id && st.clients[0].node === 'l2', { what: 'listed once, on l2' });

    // An unknown token gives a fresh socket, without an error.
    const stranger = await connect('reload-stranger', ['websocket'], { url: n2.url, auth: { resumeToken: 'not-a-token-of-anyone' } });
    assert.notEqual(stranger.id, id);
    stranger.close();
    op.close();
    p2.close();
    // The killed node known dead, so that the next test's nodes do not read its leftovers.
    await n2.waitFor('/health', (h) => h.cluster?.nodes === 1, { timeoutMs: NOTICED_MS, what: 'l1 known dead' });
    await n2.stop();
  });

  // A reload by a verified player token's sub: the page on node A goes
  // (its transport drops: a closed tab, a reload), then a new page with a
  // fresh token of the same sub connects to node B, after A was killed or
  // while A still keeps the player away.
  for (const how of ['killed', 'alive']) {
    test(`a page reloaded on another node with a token of the same sub resumes (its node ${how})`, async () => {
      const secret = 'switchboard e2e player secret, 32+ characters';
      const now = Math.floor(Date.now() / 1000);
      const tok = (sub) => signHS256({ sub, username: 'ana', exp: now + 600 }, secret);
      const [n1, n2] = await nodes([`s1${how}`, `s2${how}`], { SWITCHBOARD_CLIENT_SECRET: secret });
      const op = await connect(`sub-${how}-op`, ['websocket'], { url: n2.url });
      sockets.push(op);
      op.emit('join', { role: 'operator', name: 'Uno', operatorId: 1 });
      await n2.waitJoined(op.sid, 'operator');
      let opA;
      if (how === 'alive') {
        // An operator on the old node too: it must see nothing doubled either.
        opA = await connect(`sub-${how}-opA`, ['websocket'], { url: n1.url });
        sockets.push(opA);
        opA.emit('join', { role: 'operator', name: 'Dos', operatorId: 2 });
        await n1.waitJoined(opA.sid, 'operator');
      }
      const ops = opA ? [op, opA] : [op];
      const p = await connect(`sub-${how}-page1`, ['websocket'], { url: n1.url, auth: { token: tok('player-42') } });
      sockets.push(p);
      const id = p.id;
      const j1 = await emitAck(p, 'join', { role: 'client', name: 'Ana' });
      assert.equal(j1.ok, true, JSON.stringify(j1));
      for (const o of ops) assert.equal((await expectEvent(o, 'newChat')).clientId, id);
      assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: 'hello' })).ok, true);
      for (const o of ops) assert.equal((await expectEvent(o, 'incomingMessage')).message, 'hello');
      await say(op, p, 'one');
      await expectEvent(p, 'operatorMessage');
      if (opA) await expectEvent(opA, 'operatorBroadcast');

      // The page goes without a goodbye; a reply meanwhile is kept for it.
      p.io.reconnection(false);
      p.io.engine.close();
      for (const o of ops) assert.deepEqual(await expectEvent(o, 'chatAway'), { clientId: id });
      assert.equal((await say(op, p, 'two')).away, true);
      if (opA) await expectEvent(opA, 'operatorBroadcast');
      if (how === 'killed') {
        await delay(700); // a heartbeat or two: the node stores what its page confirmed
        n1.proc.kill('SIGKILL');
        await n1.exited;
      }

      // A new page, a fresh token of the same sub, on the other node.
      const p2 = await connect(`sub-${how}-page2`, ['websocket'], { url: n2.url, auth: { token: tok('player-42') } });
      sockets.push(p2);
      assert.equal(p2.id, id, 'the same clientId');
      const j2 = await emitAck(p2, 'join', { role: 'client', name: 'Ana' });
      assert.equal(j2.ok, true, JSON.stringify(j2));
      assert.equal(j2.clientId, id);
      for (const o of ops) assert.deepEqual(await expectEvent(o, 'chatBack'), { clientId: id });
      for (const deadline = Date.now() + 3000; !texts(p2).includes('two') && Date.now() < deadline;) await delay(20);
      await delay(100);
      const got = texts(p2);
      p2.rec.pending = [];
      // What the first page never confirmed reading may come again; 'two' exactly once.
      assert.ok(['two', 'one,two'].includes(got.join(',')), `the reloaded page got ${got}`);

      // The conversation goes on under the same clientId, once for everyone.
      assert.equal((await emitAck(p2, 'clientMessage', { type: 'text', message: 'back' })).ok, true);
      for (const o of ops) {
        const m = await expectEvent(o, 'incomingMessage');
        assert.deepEqual([m.from, m.message], [id, 'back']);
      }
      await say(op, p2, 'three');
      await expectEvent(p2, 'operatorMessage');
      if (opA) await expectEvent(opA, 'operatorBroadcast');
      assert.deepEqual(texts(p2), [...got, 'three']);
      await expectNothing([...ops, p2], 500);
      for (const o of ops) {
        assert.equal(all(o, 'newChat').length, 1, `${o.label}: no second newChat`);
        assert.deepEqual(all(o, 'chatEnded'), [], `${o.label}: no chatEnded`);
        assert.equal(all(o, 'chatBack').length, 1, `${o.label}: one chatBack`);
        assert.deepEqual(all(o, 'incomingMessage').map((m) => m.message), ['hello', 'back'], `${o.label}: the player's messages once`);
      }
      const live = how === 'alive' ? [n1, n2] : [n2];
      for (const n of live) {
        await n.waitFor('/stats', (st) => st.clients.length === 1 && st.clients[0].socketId === id && st.clients[0].node === `s2${how}`,
          { what: `listed once, on s2${how}` });
      }
      // The old node's window does not end the chat later (it let the session go).
      if (how === 'alive') await expectNothing(ops, 1000);
      for (const s of [...ops, p2]) s.close();
      if (how === 'killed') {
        await n2.waitFor('/health', (h) => h.cluster?.nodes === 1, { timeoutMs: NOTICED_MS, what: 'the killed node known dead' });
      }
      await Promise.all(live.map((n) => n.stop()));
    });
  }

  test('a killed node\'s player away past the window: exactly one chatEnded, then a fresh session', async () => {
    const [n1, n2] = await nodes(['w1', 'w2'], { SWITCHBOARD_RECOVERY_WINDOW: '3s' });
    const { op, p } = await chat(n2, n1, 'window');
    const id = p.sid;
    p.io.reconnection(false);
    n1.proc.kill('SIGKILL');
    await n1.exited;
    // Noticed dead before the window ends: away first, then ended once.
    assert.deepEqual(await expectEvent(op, 'chatAway', NOTICED_MS), { clientId: id });
    assert.deepEqual(await expectEvent(op, 'chatEnded', NOTICED_MS), { clientId: id, reason: 'disconnect' });
    await expectNothing([op], 1000);
    assert.equal(all(op, 'chatEnded').length, 1);
    await n2.waitFor('/stats', (s) => !s.clients.some((c) => c.socketId === id), { what: 'the player unlisted' });

    // Too late: the same pid and offset on the other node start afresh.
    p.io.uri = n2.url;
    p.io.reconnection(true);
    const back = nextConnect(p, 10000);
    p.connect();
    await back;
    assert.notEqual(p.recovered, true, 'not recovered past the window');
    assert.notEqual(p.id, id);
    op.close();
    p.close();
    await n2.stop();
  });

  // An operator is served from the cluster's one operators' feed after its
  // offset (docs/CONTINUITY.md, "Operators across nodes"): when part of
  // what came after it is no longer there, it gets a fresh session on
  // another node, never a replay with a gap. Its CRM joins again, as it
  // does on every connect, and gets the list again.
  test('an operator whose missed events were trimmed from the feed reconnects to another node as a clean fresh session, never a partial replay', async () => {
    const [n1, n2] = await nodes(['o1', 'o2']);
    const op = await connect('fresh-op', ['websocket'], { url: n1.url, ...RECONNECT });
    sockets.push(op);
    const joinOp = () => op.emit('join', { role: 'operator', name: 'Uno', operatorId: 1 });
    joinOp();
    await n1.waitJoined(op.sid, 'operator');
    const p = await connect('fresh-player', ['websocket'], { url: n2.url });
    sockets.push(p);
    p.emit('join', { role: 'client', name: 'Bob', username: 'bob' });
    assert.equal((await expectEvent(op, 'newChat')).clientId, p.sid);
    await playerSays(p, op, 'before');
    const oldID = op.id;

    op.io.reconnection(false);
    n1.proc.kill('SIGKILL');
    await n1.exited;
    // Before o1 is known dead its operator is online: this goes to the feed...
    assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: 'meanwhile' })).ok, true);
    // ...which then loses it (as a trim past its bound would).
    await redisCommand(redis.port, `XTRIM ${FEED} MAXLEN 0`);
    assert.equal(await redisCommand(redis.port, `XLEN ${FEED}`), ':0');

    op.rec.pending = [];
    const back = nextConnect(op, 10000);
    op.io.uri = n2.url;
    op.io.reconnection(true);
    op.connect();
    await back;
    assert.notEqual(op.recovered, true, 'not recovered: what it missed is gone');
    assert.notEqual(op.id, oldID, 'a new socket id');
    joinOp();
    assert.equal((await expectEvent(op, 'newChat')).clientId, p.sid, 'the list again');
    await expectNothing([op], 500);
    assert.equal(all(op, 'incomingMessage').filter((m) => m.message === 'before').length, 1, 'nothing replayed');
    op.close();
    p.close();
    await n2.waitFor('/health', (h) => h.cluster?.nodes === 1, { timeoutMs: NOTICED_MS, what: 'o1 known dead' });
    await n2.stop();
  });

  // Operators across nodes (docs/CONTINUITY.md): served from the
  // operators' feed after their offset, by whichever node they reach.
  test('an operator whose node is killed recovers on another node with exactly the events it missed', async () => {
    const [n1, n2] = await nodes(['x1', 'x2']);
    const { op, p } = await chat(n1, n2, 'x', { opReconnects: true, playerReconnects: false });
    const id = op.id;
    op.io.reconnection(false);
    n1.proc.kill('SIGKILL');
    await n1.exited;
    // While its node is dead: a message, a new chat, an end.
    assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: 'while gone' })).ok, true);
    const p2 = await connect('xplayer2', ['websocket'], { url: n2.url });
    sockets.push(p2);
    assert.equal((await emitAck(p2, 'join', { role: 'client', name: 'Cid', username: 'cid' })).ok, true);
    p2.disconnect();
    await delay(200);
    const back = nextConnect(op, 10000);
    op.io.uri = n2.url;
    op.io.reconnection(true);
    op.connect();
    await back;
    assert.equal(op.recovered, true, 'recovered on the other node');
    assert.equal(op.id, id, 'same socket id');
    await delay(500);
    const missed = op.rec.all.slice(1).map((r) => [r.event, r.args[0]?.message ?? r.args[0]?.clientId]);
    assert.deepEqual(missed, [['incomingMessage', 'while gone'], ['newChat', p2.sid], ['chatEnded', p2.sid]], 'exactly the missed events, in order');
    op.rec.pending = [];

    // It goes on there: the player's next message once, and its reply reaches the player.
    await playerSays(p, op, 'after');
    assert.equal((await emitAck(op, 'operatorMessage', opMsg(p.sid, 'reply'))).ok, true);
    assert.equal((await expectEvent(p, 'operatorMessage')).message, 'reply');
    await expectNothing([op, p], 500);
    const st = await n2.getJSON('/stats');
    assert.ok(st.operators.some((o) => o.socketId === id), 'listed on the node that took it over');
    // Its dead node being noticed later changes nothing for it.
    await n2.waitFor('/health', (h) => h.cluster?.nodes === 1, { timeoutMs: NOTICED_MS, what: 'x1 known dead' });
    await expectNothing([op, p], 500);
    assert.equal((await n2.getJSON('/health')).connections.operators, 1);
    op.close();
    p.close();
    await n2.stop();
  });

  test('SIGTERM of an operator\'s node: its CRM comes back by itself on another node, recovered, every missed event once', async () => {
    const [n1, n2] = await nodes(['y1', 'y2']);
    const { op, p } = await chat(n1, n2, 'y', { opReconnects: true, playerReconnects: false });
    await playerSays(p, op, 'before');
    const id = op.id;

    const t0 = Date.now();
    await n1.stop();
    // Its node said goodbye: nobody is online, so this waits for an operator.
    const q = await emitAck(p, 'clientMessage', { type: 'text', message: 'while gone' });
    assert.deepEqual([q.ok, q.queued], [true, true], JSON.stringify(q));
    const p2 = await connect('yplayer2', ['websocket'], { url: n2.url });
    sockets.push(p2);
    assert.equal((await emitAck(p2, 'join', { role: 'client', name: 'Cid', username: 'cid' })).ok, true);
    p2.disconnect();
    await delay(200);

    // The CRM's own reconnection attempts now reach the other node.
    const back = nextConnect(op, 10000);
    op.io.uri = n2.url;
    await back;
    const recoveredMs = Date.now() - t0;
    assert.equal(op.recovered, true, 'recovered on the other node');
    assert.equal(op.id, id, 'same socket id');
    await delay(500);
    const missed = op.rec.all.slice(2).map((r) => [r.event, r.args[0]?.message ?? r.args[0]?.clientId]);
    // What it missed, in order, then what waited for an operator.
    assert.deepEqual(missed, [['newChat', p2.sid], ['chatEnded', p2.sid], ['incomingMessage', 'while gone']]);
    op.rec.pending = [];
    assert.equal((await emitAck(op, 'operatorMessage', opMsg(p.sid, 'reply'))).ok, true);
    assert.equal((await expectEvent(p, 'operatorMessage')).message, 'reply');
    await expectNothing([op, p], 500);
    assert.equal(all(op, 'newChat').length, 2, 'no newChat list again');
    console.log(`# SIGTERM of an operator's node: the operator recovered ${recoveredMs} ms after the signal`);
    op.close();
    p.close();
    await n2.stop();
  });

  test('as users run it: production (JSON logs, operator JWT, CORS list), socket.io-client\'s default transports (polling, then the upgrade), a hostile client beside: a SIGTERM\'d operator\'s CRM recovers on the other node', async () => {
    const secret = 'cluster-continuity-secret-0123456789abcdef';
    const crm = 'https://crm.example.com';
    const [n1, n2] = await nodes(['u1', 'u2'], { NODE_ENV: 'production', SWITCHBOARD_JWT_SECRET: secret, CORS_ORIGIN: `${crm},https://www.example.com` });
    const now = Math.floor(Date.now() / 1000);
    const browser = { extraHeaders: { Origin: crm } };
    const op = await connect('uop', DEFAULT_TRANSPORTS, {
      url: n1.url, ...RECONNECT, ...browser,
      auth: { token: signHS256({ sub: '7', name: 'Ana', exp: now + 600 }, secret) },
    });
    sockets.push(op);
    op.emit('join', { role: 'operator', name: 'Ana', operatorId: 7 });
    await n1.waitJoined(op.sid, 'operator');
    const p = await connect('uplayer', DEFAULT_TRANSPORTS, { url: n2.url, ...browser });
    sockets.push(p);
    p.emit('join', { role: 'client', name: 'Bob', username: 'bob' });
    assert.equal((await expectEvent(op, 'newChat')).clientId, p.sid);
    for (const s of [op, p]) assert.equal(await s.upgraded, 'websocket');
    await playerSays(p, op, 'before');
    const id = op.id;

    // Beside the honest player, on its node: unknown events of 100 KB, and
    // messages that break the contract, as fast as the client sends.
    const bad = await connect('uhostile', DEFAULT_TRANSPORTS, { url: n2.url, ...browser });
    sockets.push(bad);
    bad.emit('join', { role: 'client', name: 'Eve', username: 'eve' });
    for (let i = 0; i < 50; i++) {
      bad.emit('x-unknown', { blob: 'x'.repeat(100_000) });
      bad.emit('clientMessage', { type: 'text', message: 'x'.repeat(6000) });
    }

    const back = nextConnect(op, 10000);
    op.io.uri = n2.url; // its own reconnection attempts reach the other node
    await n1.stop();
    assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: 'while gone' })).ok, true);
    await back;
    assert.equal(op.recovered, true, 'recovered on the other node, over polling first');
    assert.equal(op.id, id, 'same socket id');
    assert.equal((await expectEvent(op, 'incomingMessage')).message, 'while gone');
    assert.equal((await emitAck(op, 'operatorMessage', opMsg(p.sid, 'reply'))).ok, true);
    assert.equal((await expectEvent(p, 'operatorMessage')).message, 'reply');
    assert.deepEqual(all(op, 'incomingMessage').map((m) => m.message), ['before', 'while gone'], 'each once, none of the hostile client\'s');
    assert.ok(all(bad, 'chatError').length > 0, 'the hostile client was answered with chatError');
    op.close();
    p.close();
    bad.close();
    await n2.stop();
  });

  test('a node with an operator and a player killed: both recover on the other node, the operator gets its players\' chatAway and chatBack once', async () => {
    const [n1, n2] = await nodes(['z1', 'z2']);
    const op = await connect('zop', ['websocket'], { url: n1.url, ...RECONNECT });
    sockets.push(op);
    op.emit('join', { role: 'operator', name: 'Uno', operatorId: 1 });
    await n1.waitJoined(op.sid, 'operator');
    const op2 = await connect('zop2', ['websocket'], { url: n2.url });
    sockets.push(op2);
    op2.emit('join', { role: 'operator', name: 'Dos', operatorId: 2 });
    await n2.waitJoined(op2.sid, 'operator');
    const p = await connect('zplayer', ['websocket'], { url: n1.url, ...RECONNECT });
    sockets.push(p);
    p.emit('join', { role: 'client', name: 'Bob', username: 'bob' });
    for (const o of [op, op2]) assert.equal((await expectEvent(o, 'newChat')).clientId, p.sid);
    await say(op, p, 'one');
    await expectEvent(p, 'operatorMessage');
    await expectEvent(op2, 'operatorBroadcast');
    const [opID, pID] = [op.id, p.id];

    op.io.reconnection(false);
    p.io.reconnection(false);
    n1.proc.kill('SIGKILL');
    await n1.exited;
    assert.deepEqual(await expectEvent(op2, 'chatAway', NOTICED_MS), { clientId: pID });
    assert.equal((await say(op2, p, 'two')).away, true);

    for (const s of [op, p]) {
      const back = nextConnect(s, 10000);
      s.io.uri = n2.url;
      s.io.reconnection(true);
      s.connect();
      await back;
      assert.equal(s.recovered, true, `${s.label} recovered`);
    }
    assert.deepEqual([op.id, p.id], [opID, pID], 'same socket ids');
    assert.deepEqual(await expectEvent(op2, 'chatBack'), { clientId: pID });
    await delay(500);
    const missed = op.rec.all.slice(1).map((r) => [r.event, r.args[0]?.clientId]);
    assert.deepEqual(missed, [['chatAway', pID], ['operatorBroadcast', pID], ['chatBack', pID]], 'what it missed once and in order, then chatBack');
    assert.deepEqual(texts(p), ['one', 'two']);
    op.rec.pending = [];
    op2.rec.pending = [];
    p.rec.pending = [];
    await expectNothing([op, op2, p], 500);
    for (const o of [op, op2]) {
      assert.deepEqual(all(o, 'chatEnded'), [], `${o.label}: no chatEnded`);
      assert.equal(all(o, 'newChat').length, 1, `${o.label}: no second newChat`);
    }
    op.close();
    op2.close();
    p.close();
    await n2.stop();
  });

  test('an operator\'s blip on its own node: what other nodes\' players said meanwhile is replayed once', async () => {
    const [n1, n2] = await nodes(['v1', 'v2']);
    const { op, p } = await chat(n1, n2, 'v', { opReconnects: true, playerReconnects: false });
    await playerSays(p, op, 'before');
    const id = op.id;
    op.io.reconnection(false);
    op.io.engine.close();
    await delay(300); // its node has seen the transport go: the operator is away
    assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: 'during' })).ok, true);
    const back = nextConnect(op, 10000);
    op.io.reconnection(true);
    op.connect();
    await back;
    assert.equal(op.recovered, true);
    assert.equal(op.id, id);
    assert.equal((await expectEvent(op, 'incomingMessage')).message, 'during');
    await expectNothing([op], 500);
    assert.deepEqual(all(op, 'incomingMessage').map((m) => m.message), ['before', 'during']);
    op.close();
    p.close();
    await Promise.all([n1.stop(), n2.stop()]);
  });

  /**
   * Under routing, an operator on node a that owns the chat of a player on
   * node b (auto: assigned to it; claim: it claims it), told of it.
   */
  async function ownedChat(a, b, mode, label) {
    const { op, p } = await chat(a, b, label, { opReconnects: true });
    if (mode === 'claim') {
      assert.equal((await expectEvent(op, 'chatQueued')).clientId, p.sid);
      assert.equal((await emitAck(op, 'claimChat', { clientId: p.sid })).ok, true);
    }
    assert.equal((await expectEvent(op, 'chatAssigned')).clientId, p.sid);
    await expectEvent(p, 'operatorAssigned');
    await playerSays(p, op, 'before');
    p.rec.pending = []; // its queued place (claim), told before the claim
    return { op, p };
  }

  for (const mode of ['auto', 'claim']) {
    test(`${mode} routing: an operator's blip on its own node while its player on another node sends 3 messages: recovered, the 3 once and in order`, async () => {
      const [n1, n2] = await nodes([`${mode}b1`, `${mode}b2`], { SWITCHBOARD_ROUTING: mode });
      const { op, p } = await ownedChat(n1, n2, mode, `${mode}blip`);
      const id = op.id;
      op.io.reconnection(false);
      op.io.engine.close();
      await delay(300); // its node has seen the transport go: the operator is away
      for (const t of ['one', 'two', 'three']) {
        assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: t })).ok, true);
      }
      op.rec.pending = [];
      const back = nextConnect(op, 10000);
      op.io.reconnection(true);
      op.connect();
      await back;
      assert.equal(op.recovered, true, 'recovered');
      assert.equal(op.id, id, 'same socket id');
      for (let i = 0; i < 3; i++) await expectEvent(op, 'incomingMessage');
      await expectNothing([op], 500);
      assert.deepEqual(all(op, 'incomingMessage').map((m) => m.message), ['before', 'one', 'two', 'three'], 'the 3 once and in order');
      // Still its owner: its reply is accepted and reaches the player.
      assert.equal((await emitAck(op, 'operatorMessage', opMsg(p.sid, 'reply'))).ok, true);
      assert.equal((await expectEvent(p, 'operatorMessage')).message, 'reply');
      op.close();
      p.close();
      await Promise.all([n1.stop(), n2.stop()]);
    });
  }

  for (const mode of ['auto', 'claim']) {
    test(`${mode} routing: an operator whose node is killed recovers on the other node with exactly what it missed, and keeps its chats`, async () => {
      const [n1, n2] = await nodes([`${mode}k1`, `${mode}k2`], { SWITCHBOARD_ROUTING: mode });
      const { op, p } = await ownedChat(n1, n2, mode, `${mode}kill`);
      const id = op.id;
      const seen = op.rec.all.length;
      op.io.reconnection(false);
      n1.proc.kill('SIGKILL');
      await n1.exited;
      // While its node is dead: its player's message, and a new chat
      // (auto: given to it, not yet known dead; claim: offered to all).
      assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: 'while gone' })).ok, true);
      const p2 = await connect(`${mode}kill-player2`, ['websocket'], { url: n2.url });
      sockets.push(p2);
      assert.equal((await emitAck(p2, 'join', { role: 'client', name: 'Cid', username: 'cid' })).ok, true);
      if (mode === 'auto') await expectEvent(p2, 'operatorAssigned');
      await n2.waitFor('/health', (h) => h.cluster?.nodes === 1, { timeoutMs: NOTICED_MS, what: 'the killed node known dead' });
      const back = nextConnect(op, 10000);
      op.io.uri = n2.url;
      op.io.reconnection(true);
      op.connect();
      await back;
      assert.equal(op.recovered, true, 'recovered on the other node');
      assert.equal(op.id, id, 'same socket id');
      await delay(500);
      const missed = op.rec.all.slice(seen).map((r) => [r.event, r.args[0]?.message ?? r.args[0]?.clientId, r.args[0]?.position ?? r.args[0]?.operatorId]);
      if (mode === 'claim') {
        // The player's node writes its newChat and Redis the decision's
        // chatQueued to the feed independently: every node tells them in
        // the feed's order, and so does the replay.
        const tail = missed.slice(1).sort((x, y) => x[0].localeCompare(y[0]));
        assert.deepEqual([missed[0], ...tail], [['incomingMessage', 'while gone', undefined], ['chatQueued', p2.sid, 1], ['newChat', p2.sid, undefined]], 'exactly the missed events');
      } else {
        assert.deepEqual(missed, [['incomingMessage', 'while gone', undefined], ['newChat', p2.sid, undefined], ['chatAssigned', p2.sid, 1]], 'exactly the missed events, in order');
      }
      op.rec.pending = [];

      // Still the owner, with no release and no second assignment.
      assert.equal((await emitAck(op, 'operatorMessage', opMsg(p.sid, 'reply'))).ok, true);
      assert.equal((await expectEvent(p, 'operatorMessage')).message, 'reply');
      await playerSays(p, op, 'after');
      await expectNothing([op, p], 500);
      const st = await n2.getJSON('/stats');
      assert.equal(st.clients.find((c) => c.socketId === p.sid)?.owner, 1, 'still owns its chat');
      if (mode === 'auto') assert.equal(st.clients.find((c) => c.socketId === p2.sid)?.owner, 1, 'and the one given to it');
      assert.equal(all(p, 'operatorAssigned').length, 1, 'its player was not assigned again');
      op.close();
      p.close();
      p2.close();
      await n2.stop();
    });
  }

  test('auto routing: an operator and its player on one node, killed with a message the operator had not read: recovered on the other node with that message', async () => {
    const [n1, n2] = await nodes(['autoh1', 'autoh2'], { SWITCHBOARD_ROUTING: 'auto' });
    const { op, p } = await ownedChat(n1, n1, 'auto', 'autohere');
    const id = op.id;
    const seen = op.rec.all.length;
    // Its transport goes; its session on n1 keeps what comes meanwhile.
    op.io.reconnection(false);
    op.io.engine.close();
    await delay(300);
    p.io.reconnection(false);
    assert.equal((await emitAck(p, 'clientMessage', { type: 'text', message: 'unread' })).ok, true);
    n1.proc.kill('SIGKILL');
    await n1.exited;
    await n2.waitFor('/health', (h) => h.cluster?.nodes === 1, { timeoutMs: NOTICED_MS, what: 'the killed node known dead' });
    const back = nextConnect(op, 10000);
    op.io.uri = n2.url;
    op.io.reconnection(true);
    op.connect();
    await back;
    assert.equal(op.recovered, true, 'recovered on the other node, not a fresh session');
    assert.equal(op.id, id, 'same socket id');
    await delay(500);
    const missed = op.rec.all.slice(seen).map((r) => [r.event, r.args[0]?.message ?? r.args[0]?.clientId]);
    assert.deepEqual(missed.filter(([ev]) => ev === 'incomingMessage'), [['incomingMessage', 'unread']], 'the message it had not read, once');
    assert.deepEqual(missed.filter(([ev]) => ev !== 'incomingMessage'), [['chatAway', p.sid]], 'and its player away, nothing else');
    op.rec.pending = [];
    await expectNothing([op], 300);
    op.close();
    p.close();
    await n2.stop();
  });

  test('auto routing: SIGTERM of an operator\'s node: its CRM comes back by itself on the other node, recovered, and keeps its chat', async () => {
    const [n1, n2] = await nodes(['autos1', 'autos2'], { SWITCHBOARD_ROUTING: 'auto' });
    const { op, p } = await ownedChat(n1, n2, 'auto', 'autostop');
    const id = op.id;
    const seen = op.rec.all.length;
    const back = nextConnect(op, 10000);
    op.io.uri = n2.url; // its own reconnection attempts reach the other node
    await n1.stop();
    await back;
    assert.equal(op.recovered, true, 'recovered on the other node');
    assert.equal(op.id, id, 'same socket id');
    // Known gone at once: it takes no new chat, and a new one waits.
    await playerSays(p, op, 'after');
    assert.equal((await emitAck(op, 'operatorMessage', opMsg(p.sid, 'reply'))).ok, true);
    assert.equal((await expectEvent(p, 'operatorMessage')).message, 'reply');
    await expectNothing([op, p], 500);
    assert.deepEqual(op.rec.all.slice(seen).map((r) => r.event), ['incomingMessage'], 'nothing else');
    const st = await n2.getJSON('/stats');
    assert.equal(st.clients.find((c) => c.socketId === p.sid)?.owner, 1, 'still owns its chat');
    assert.equal(all(p, 'operatorAssigned').length, 1, 'its player was not assigned again');
    op.close();
    p.close();
    await n2.stop();
  });

  test('auto routing: an operator\'s blip that reconnects to another live node starts afresh there, and its join keeps its chats', async () => {
    const [n1, n2] = await nodes(['autol1', 'autol2'], { SWITCHBOARD_ROUTING: 'auto' });
    const { op, p } = await ownedChat(n1, n2, 'auto', 'autolive');
    const id = op.id;
    op.io.reconnection(false);
    op.io.engine.close();
    await delay(300);
    const back = nextConnect(op, 10000);
    op.io.uri = n2.url;
    op.io.reconnection(true);
    op.connect();
    await back;
    assert.notEqual(op.recovered, true, 'its old node is alive: not taken over');
    assert.notEqual(op.id, id);
    assert.equal((await emitAck(op, 'join', { role: 'operator', name: 'Uno', operatorId: 1 })).ok, true);
    assert.equal((await expectEvent(op, 'newChat')).clientId, p.sid, 'its chat in its join\'s list');
    assert.equal((await emitAck(op, 'operatorMessage', opMsg(p.sid, 'reply'))).ok, true, 'still its owner');
    assert.equal((await expectEvent(p, 'operatorMessage')).message, 'reply');
    await playerSays(p, op, 'after');
    assert.equal(all(p, 'operatorAssigned').length, 1, 'not assigned again');
    assert.deepEqual(all(op, 'chatQueued'), [], 'not released');
    op.close();
    p.close();
    await Promise.all([n1.stop(), n2.stop()]);
  });

  test('Redis restarted empty: fresh sessions, never a wrong replay', async () => {
    const [n1, n2] = await nodes(['r1', 'r2']);
    const { op, p } = await chat(n2, n1, 'restart');
    const id = p.sid;
    await say(op, p, 'before');
    await expectEvent(p, 'operatorMessage');

    redis.proc.kill('SIGKILL');
    await new Promise((resolve) => redis.proc.once('exit', resolve));
    redis = await startRedis(redis.port);
    for (const n of [n1, n2]) {
      await n.waitFor('/health', (h) => h.cluster?.redis === 'ok' && h.cluster?.nodes === 2, { timeoutMs: 15000, what: 'cluster back' });
    }
    await n2.waitFor('/stats', (s) => s.clients.some((c) => c.socketId === id), { timeoutMs: 10000, what: 'presence rewritten' });
    // Delivered across nodes without the lost store, once the player's
    // node listens again: until then the operator hears 'unavailable'
    // (neither stored nor delivered) and sends again, as a CRM would.
    for (const deadline = Date.now() + 10000; ;) {
      const ack = await emitAck(op, 'operatorMessage', opMsg(p.sid, 'after'));
      if (ack.ok) break;
      assert.equal(ack.error?.code, 'unavailable', JSON.stringify(ack));
      assert.ok(Date.now() < deadline, 'still unavailable after 10 s');
      await delay(200);
    }
    assert.equal((await expectEvent(p, 'operatorMessage')).message, 'after');

    n1.proc.kill('SIGKILL');
    await n1.exited;
    const back = nextConnect(p, 10000);
    p.io.uri = n2.url;
    await back;
    assert.notEqual(p.recovered, true, 'a store that lost the session cannot recover it');
    assert.notEqual(p.id, id);
    await expectNothing([p], 500);
    assert.deepEqual(texts(p), ['before', 'after'], 'nothing replayed');
    op.close();
    p.close();
    await n2.stop();
  });
});
