// Routing across nodes when things fail (SWITCHBOARD_ROUTING claim and auto
// with REDIS_URL): a node killed (kill -9) with operators on it, a node's
// subscription cut, Redis unreachable. Real switchboard binaries on a
// redis-server of the test's own, the npm socket.io-client as CRMs and
// widgets. Skipped when redis-server is not installed.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import {
  assertAckOk, connect, emitAck, expectEvent, redisCommand, withCluster,
} from './helpers.mjs';

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
const WS = ['websocket'];
const text = (message) => ({ type: 'text', message });

// A dead node is noticed within DEAD_AFTER plus a heartbeat or two; its
// operators' chats go back WINDOW after it was last alive.
const FAST = {
  SWITCHBOARD_CLUSTER_HEARTBEAT: '250ms',
  SWITCHBOARD_CLUSTER_DEAD_AFTER: '1s',
  SWITCHBOARD_RECOVERY_WINDOW: '4s',
};
const WINDOW_MS = 4000;

// An operator's availability reaches Redis a moment after its join is
// acknowledged (one script on the node's routing worker).
const SETTLE_MS = 300;

/** withCluster with fast failure detection; nodes may be killed, so they are killed at the end. */
const failoverCluster = (env, fn) => withCluster({ ...FAST, ...env }, fn, { kill: true });

function events(s, name, pred = () => true) {
  return s.rec.all.filter((r) => r.event === name && pred(r.args[0])).map((r) => r.args[0]);
}

function count(s, name, pred) {
  return events(s, name, pred).length;
}

async function until(pred, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(10);
  }
}

/** The owner of each chat in a node's /stats, by socket id. */
async function owners(node) {
  const st = await node.getJSON('/stats');
  return Object.fromEntries(st.clients.map((c) => [c.socketId, c.owner ?? (c.queuePosition ? `#${c.queuePosition}` : null)]));
}

/** Kills node n with SIGKILL and waits until the others count two nodes. */
async function killNode(nodes, n) {
  nodes[n].proc.kill('SIGKILL');
  await nodes[n].exited;
  const t0 = Date.now();
  for (const node of nodes.filter((_, i) => i !== n)) {
    await node.waitFor('/health', (h) => h.cluster?.nodes === 2, { timeoutMs: 10000, what: 'the dead node noticed' });
  }
  return t0;
}

describe('routing across nodes when a node dies', { skip: hasRedis ? false : 'redis-server is not installed' }, () => {
  test('auto: a killed node\'s operator keeps its chats for the window, then they go back to the queue in order, once, and on to an operator of a live node', async () => {
    await failoverCluster({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '3' }, async ({ nodes, operator, player }) => {
      // Two observers on the surviving nodes, away so that they take nothing yet.
      const keeper = await operator('keeper', 0);
      const obs = await operator('obs', 1);
      assertAckOk(await emitAck(keeper, 'setStatus', { status: 'away' }));
      assertAckOk(await emitAck(obs, 'setStatus', { status: 'away' }));
      const doomed = await operator('doomed', 2);
      await delay(SETTLE_MS);
      const ps = [];
      for (let i = 1; i <= 5; i++) {
        ps.push(await player(`p${i}`, i % 2));
        await until(() => count(keeper, 'chatAssigned') + count(keeper, 'chatQueued') === i, `p${i} decided`);
      }
      const ids = ps.map((p) => p.sid);
      assert.deepEqual(events(keeper, 'chatAssigned').map((a) => [a.clientId, a.operatorId]), ids.slice(0, 3).map((c) => [c, 'doomed']));
      assert.deepEqual(events(keeper, 'chatQueued'), ids.slice(3).map((c, i) => ({ clientId: c, position: i + 1 })));

      const t0 = await killNode(nodes, 2);
      doomed.disconnect();
      const noticed = Date.now() - t0;
      // Within the window the chats are still the dead operator's.
      const early = await owners(nodes[0]);
      if (Date.now() - t0 < WINDOW_MS - 1500) {
        assert.deepEqual(ids.map((c) => early[c]), ['doomed', 'doomed', 'doomed', '#1', '#2']);
      }

      // Past it they go back ahead of those that waited, in their order, once on every node.
      await until(() => [keeper, obs].every((o) => count(o, 'chatQueued') === 5), 'the chats back in the queue', 15000);
      const released = Date.now() - t0;
      assert.ok(released >= WINDOW_MS - 1000, `released ${released} ms after the kill, before the ${WINDOW_MS} ms window`);
      for (const o of [keeper, obs]) {
        assert.deepEqual(events(o, 'chatQueued').slice(2), ids.slice(0, 3).map((c, i) => ({ clientId: c, position: i + 1 })));
      }
      for (const [i, p] of ps.entries()) {
        await until(() => events(p, 'queued').at(-1)?.position === i + 1, `${p.label} told position ${i + 1}`);
      }
      for (const n of nodes.slice(0, 2)) {
        const now = await owners(n);
        assert.deepEqual(ids.map((c) => now[c]), ['#1', '#2', '#3', '#4', '#5']);
      }

      // An operator of a live node that comes takes them, oldest first.
      assertAckOk(await emitAck(obs, 'setStatus', { status: 'available' }));
      await until(() => count(obs, 'newChat') === 3, 'obs introduced to 3 chats');
      assert.deepEqual(events(obs, 'newChat').map((c) => c.clientId), ids.slice(0, 3));
      for (const p of ps.slice(0, 3)) await until(() => count(p, 'operatorAssigned') === 2, `${p.label} reassigned`);
      await delay(500);
      for (const o of [keeper, obs]) {
        for (const c of ids.slice(0, 3)) {
          assert.deepEqual(events(o, 'chatAssigned', (a) => a.clientId === c).map((a) => a.operatorId), ['doomed', 'obs'], `${o.label} hears ${c}'s owners`);
          assert.equal(count(o, 'chatQueued', (q) => q.clientId === c), 1, `${o.label} hears ${c} queued once`);
        }
      }
      for (const p of ps.slice(0, 3)) {
        assert.deepEqual(events(p, 'operatorAssigned').map((a) => a.operatorName), ['doomed', 'obs']);
      }
      ps[0].emit('clientMessage', text('¿hola?'));
      assert.equal((await expectEvent(obs, 'incomingMessage')).message, '¿hola?');
      console.log(`# kill -9: noticed after ${noticed} ms; chats back in the queue after ${released} ms (window ${WINDOW_MS} ms)`);
    });
  });

  test('claim: a killed node\'s chats are offered again to every operator, once, past the window', async () => {
    await failoverCluster({ SWITCHBOARD_ROUTING: 'claim' }, async ({ nodes, operator, player }) => {
      const a = await operator('a', 0);
      const b = await operator('b', 1);
      const doomed = await operator('doomed', 2);
      const p1 = await player('p1', 0);
      const p2 = await player('p2', 1);
      for (const p of [p2, p1]) assertAckOk(await emitAck(doomed, 'claimChat', { clientId: p.sid }));
      for (const o of [a, b]) await until(() => count(o, 'chatAssigned') === 2, `${o.label} hears both claims`);

      const t0 = await killNode(nodes, 2);
      doomed.disconnect();
      for (const o of [a, b]) await until(() => count(o, 'chatQueued') === 4, `${o.label} hears both chats offered again`);
      const released = Date.now() - t0;
      assert.ok(released >= WINDOW_MS - 1000, `released after ${released} ms`);
      for (const o of [a, b]) {
        assert.deepEqual(events(o, 'chatQueued').slice(2), [{ clientId: p1.sid, position: 1 }, { clientId: p2.sid, position: 2 }]);
      }
      assert.deepEqual(events(p2, 'queued').at(-1), { position: 2 });
      assertAckOk(await emitAck(b, 'claimChat', { clientId: p2.sid }));
      await until(() => count(p2, 'operatorAssigned') === 2, 'p2 told of b');
      assert.deepEqual(events(p2, 'operatorAssigned').map((a) => a.operatorName), ['doomed', 'b']);
      await delay(500);
      for (const o of [a, b]) assert.equal(count(o, 'chatQueued'), 4, `${o.label} chatQueued`);
    });
  });

  test('auto: a killed node\'s player that does not come back within the window frees its owner\'s room for the next waiting chat', async () => {
    await failoverCluster({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '1' }, async ({ nodes, operator, player }) => {
      const op = await operator('op', 0);
      await delay(SETTLE_MS);
      const doomed = await player('doomed', 2);
      await until(() => count(op, 'newChat') === 1, 'op has the doomed player\'s chat');
      const p2 = await player('p2', 1);
      assert.deepEqual(await expectEvent(p2, 'queued'), { position: 1 });

      const t0 = await killNode(nodes, 2);
      doomed.disconnect();
      await until(() => count(p2, 'operatorAssigned') === 1, 'p2 assigned once the dead node\'s chat ended');
      const freed = Date.now() - t0;
      assert.ok(freed >= WINDOW_MS - 1000, `freed after ${freed} ms, within the window`);
      // Each node ends it when its own window is over: op hears it once.
      await until(() => count(op, 'chatEnded') === 1, 'op told the chat ended');
      assert.deepEqual(events(op, 'chatEnded').map((e) => e.clientId), [doomed.sid]);
      await until(() => events(op, 'newChat').some((c) => c.clientId === p2.sid), 'op introduced to p2');
      await delay(500);
      assert.equal(count(op, 'chatAssigned', (a) => a.clientId === p2.sid), 1);
      assert.equal(count(p2, 'operatorAssigned'), 1);
      console.log(`# kill -9 of a player's node: its owner's room went to the next waiting chat ${freed} ms after the kill`);
    });
  });

  test('auto: an operator that moves to a live node within the window keeps its chats', async () => {
    await failoverCluster({ SWITCHBOARD_ROUTING: 'auto' }, async ({ nodes, operator, player }) => {
      const obs = await operator('obs', 0);
      assertAckOk(await emitAck(obs, 'setStatus', { status: 'away' }));
      const ana = await operator('ana', 2);
      await delay(SETTLE_MS);
      const p1 = await player('p1', 0);
      const p2 = await player('p2', 1);
      await until(() => count(obs, 'chatAssigned') === 2, 'both chats assigned');

      nodes[2].proc.kill('SIGKILL');
      await nodes[2].exited;
      ana.disconnect();
      // The CRM reconnects through the balancer, to another node.
      const ana2 = await operator('ana', 1);
      await until(() => count(ana2, 'newChat') === 2, 'ana sees her chats again');
      await killNode(nodes, 2);
      await delay(WINDOW_MS + 1000);
      assert.equal(count(obs, 'chatQueued'), 0, 'a chat went back to the queue');
      for (const n of nodes.slice(0, 2)) {
        const now = await owners(n);
        assert.deepEqual([now[p1.sid], now[p2.sid]], ['ana', 'ana']);
      }
      p1.emit('clientMessage', text('¿sigues?'));
      assert.equal((await expectEvent(ana2, 'incomingMessage')).message, '¿sigues?');
      // And she takes new chats.
      const p3 = await player('p3', 0);
      await until(() => count(ana2, 'newChat') === 3, 'ana introduced to p3');
      assert.deepEqual(events(ana2, 'newChat').at(-1), { clientId: p3.sid, username: 'p3' });
    });
  });
});

describe('routing across nodes when an operator moves', { skip: hasRedis ? false : 'redis-server is not installed' }, () => {
  test('auto: an operator\'s CRM joins another node and leaves its old one at the same moment; it keeps its chats and takes new ones', async () => {
    await failoverCluster({ SWITCHBOARD_ROUTING: 'auto' }, async ({ nodes, sockets, operator, player }) => {
      const obs = await operator('obs', 2);
      assertAckOk(await emitAck(obs, 'setStatus', { status: 'away' }));
      const ps = [];
      let cur;
      for (let round = 0; round < 3; round++) {
        // ana is on node `from` with her chats; her CRM moves to `to`.
        const from = round % 2;
        const to = 1 - from;
        const ana = round === 0 ? await operator('ana', from) : cur;
        if (round === 0) {
          await delay(SETTLE_MS);
          ps.push(await player('p1', 2), await player('p2', 0));
          await until(() => count(ana, 'newChat') === 2, 'ana has two chats');
        }
        // The new tab's join is acknowledged; the old tab closes at once,
        // before the other nodes can have heard of the new one.
        const ana2 = await connect('ana', WS, { url: nodes[to].url });
        sockets.push(ana2);
        assertAckOk(await emitAck(ana2, 'join', { role: 'operator', name: 'ana', operatorId: 'ana' }));
        ana.disconnect();
        cur = ana2;
        await until(() => count(ana2, 'newChat') === 2, `round ${round}: ana sees her chats on her new node`);
        await delay(1000);
        assert.equal(count(obs, 'chatQueued'), 0, `round ${round}: a chat went back to the queue`);
        for (const n of nodes) {
          const now = await owners(n);
          assert.deepEqual(ps.map((p) => now[p.sid]), ['ana', 'ana'], `round ${round}: owners on ${n.url}`);
        }
        ps[0].emit('clientMessage', text(`round ${round}`));
        await until(() => events(ana2, 'incomingMessage').some((m) => m.message === `round ${round}`), `round ${round}: ana hears p1`);
      }
      // She is available: a new chat is hers.
      const p3 = await player('p3', 2);
      await until(() => events(cur, 'newChat').some((c) => c.clientId === p3.sid), 'ana gets the new chat');
    });
  });
});

describe('routing across nodes when a subscription drops', { skip: hasRedis ? false : 'redis-server is not installed' }, () => {
  test('auto: every node\'s subscription cut again and again; every decision and every delivery to an owner on another node arrives once', async () => {
    await failoverCluster({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '50' }, async ({ nodes, redis, sockets, operator }) => {
      // The operators are on two nodes, the players on the third.
      const ops = [await operator('o1', 1), await operator('o2', 2)];
      await delay(SETTLE_MS);
      // Players join on the third node ten at a time and talk, while every
      // node's subscription is cut every 40 ms.
      let kills = 0;
      let cutting = true;
      const cutter = (async () => {
        while (cutting) {
          const reply = await redisCommand(redis.port, 'CLIENT KILL TYPE pubsub');
          kills += Number(reply.slice(1));
          await delay(40);
        }
      })();
      const ps = [];
      try {
        for (let b = 0; b < 30; b += 10) {
          ps.push(...await Promise.all(Array.from({ length: 10 }, async (_, k) => {
            const p = await connect(`p${b + k}`, WS, { url: nodes[0].url });
            sockets.push(p);
            assertAckOk(await emitAck(p, 'join', { role: 'client', name: p.label }));
            for (const m of ['a', 'b']) {
              const ack = await emitAck(p, 'clientMessage', text(`${p.label}${m}`));
              assert.equal(ack.ok, true, JSON.stringify(ack));
            }
            return p;
          })));
          await delay(200);
        }
      } finally {
        cutting = false;
        await cutter;
      }
      assert.ok(kills >= 10, `subscriptions cut: ${kills}`);
      const ids = ps.map((p) => p.sid);
      await until(() => ops.every((o) => count(o, 'chatAssigned') >= 30), 'every chatAssigned on every operator');
      const owner = {};
      for (const o of ops) {
        const assigned = events(o, 'chatAssigned');
        assert.deepEqual(assigned.map((a) => a.clientId).sort(), [...ids].sort(), `${o.label}: each chat assigned once`);
        for (const a of assigned) owner[a.clientId] = a.operatorId;
      }
      for (const o of ops) {
        const mine = ids.filter((c) => owner[c] === o.label);
        const want = ps.filter((p) => owner[p.sid] === o.label).flatMap((p) => [`${p.label}a`, `${p.label}b`]);
        await until(() => count(o, 'incomingMessage') >= want.length && count(o, 'newChat') >= mine.length, `${o.label}'s chats and messages (${mine.length} chats, ${want.length} messages; got ${count(o, 'newChat')} newChat, ${count(o, 'incomingMessage')} incomingMessage: missing ${want.filter((w) => !events(o, 'incomingMessage').some((m) => m.message === w))})`);
        await delay(300);
        assert.deepEqual(events(o, 'newChat').map((c) => c.clientId).sort(), mine.sort(), `${o.label}: newChat once per chat`);
        assert.deepEqual(events(o, 'incomingMessage').map((m) => m.message).sort(), want.sort(), `${o.label}: every message of its chats once`);
      }
      for (const p of ps) {
        await until(() => count(p, 'operatorAssigned') >= 1, `${p.label} operatorAssigned`);
      }
      await delay(300);
      for (const p of ps) assert.equal(count(p, 'operatorAssigned'), 1, `${p.label} operatorAssigned once`);
      console.log(`# ${kills} subscriptions cut over 30 chats; owners: ${ops.map((o) => `${o.label} ${ids.filter((c) => owner[c] === o.label).length}`).join(', ')}`);
    });
  });
});

describe('routing across nodes while Redis is away', { skip: hasRedis ? false : 'redis-server is not installed' }, () => {
  test('claim: a request Redis cannot answer is refused unavailable; asked again it is taken once, and a bystander\'s chat goes on', async () => {
    await failoverCluster({ SWITCHBOARD_ROUTING: 'claim' }, async ({ redis, operator, player }) => {
      const a = await operator('a', 0);
      const b = await operator('b', 1);
      const p1 = await player('p1', 0);
      const p2 = await player('p2', 1);
      assertAckOk(await emitAck(a, 'claimChat', { clientId: p1.sid }));
      await until(() => count(b, 'chatAssigned') === 1, 'b hears a\'s claim');

      redis.proc.kill('SIGSTOP');
      let resumed = false;
      try {
        const t0 = Date.now();
        const reply = await emitAck(b, 'claimChat', { clientId: p2.sid }, 15000);
        const refusedMs = Date.now() - t0;
        assert.equal(reply.ok, false, JSON.stringify(reply));
        assert.equal(reply.error.code, 'unavailable', JSON.stringify(reply));
        assert.match(reply.error.message, /unavailable/);
        redis.proc.kill('SIGCONT');
        resumed = true;
        console.log(`# Redis paused: claimChat refused 'unavailable' after ${refusedMs} ms`);
      } finally {
        if (!resumed) redis.proc.kill('SIGCONT');
      }

      // Asked again once Redis is back, the claim is b's (whether or not
      // the first one ran when Redis woke up), and p2 hears it once.
      const deadline = Date.now() + 10000;
      let again;
      do {
        again = await emitAck(b, 'claimChat', { clientId: p2.sid }, 5000);
        if (!again.ok) await delay(200);
      } while (!again.ok && again.error?.code === 'unavailable' && Date.now() < deadline);
      assertAckOk(again);
      await until(() => count(p2, 'operatorAssigned') === 1, 'p2 told of b');
      await delay(500);
      assert.deepEqual(events(p2, 'operatorAssigned'), [{ operatorName: 'b' }]);
      assert.equal(count(a, 'chatAssigned', (x) => x.clientId === p2.sid), 1);
      p2.emit('clientMessage', text('¿hola?'));
      await until(() => events(b, 'incomingMessage').some((m) => m.message === '¿hola?'), 'b hears p2');

      // The bystander's chat goes on, both ways, and nobody else hears it.
      assertAckOk(await emitAck(p1, 'clientMessage', text('¿sigues ahí?')));
      await until(() => events(a, 'incomingMessage').some((m) => m.message === '¿sigues ahí?'), 'a hears p1');
      assertAckOk(await emitAck(a, 'operatorMessage', { to: p1.sid, ...text('sí'), operatorId: 'a', operatorName: 'a' }));
      await until(() => events(p1, 'operatorMessage').some((m) => m.message === 'sí'), 'p1 hears a');
      assert.equal(count(b, 'incomingMessage', (m) => m.from === p1.sid), 0);
      assert.equal(count(a, 'incomingMessage', (m) => m.from === p2.sid), 0);
    });
  });
});
