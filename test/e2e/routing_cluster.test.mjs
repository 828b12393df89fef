// Routing across nodes (SWITCHBOARD_ROUTING claim and auto with REDIS_URL):
// three switchboard binaries on one redis-server of the test's own, the npm
// socket.io-client as CRMs and widgets spread over the nodes. Every decision
// is taken once in Redis; each test starts its own Redis and nodes.
// Skipped when redis-server is not installed.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import {
  assertAckOk, assertAckRefused, emitAck, expectEvent, expectNothing, withCluster,
} from './helpers.mjs';

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
const text = (message) => ({ type: 'text', message });


function count(s, name, pred = () => true) {
  return s.rec.all.filter((r) => r.event === name && pred(r.args[0])).length;
}

async function until(pred, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(10);
  }
}

// An operator's availability reaches Redis a moment after its join is
// acknowledged (one script on the node's routing worker).
const SETTLE_MS = 300;

describe('routing across three nodes on one Redis', { skip: hasRedis ? false : 'redis-server is not installed' }, () => {
  test('claim: 10 operators on three nodes claim one chat at once; exactly one wins, the others are told already_claimed', async () => {
    await withCluster({ SWITCHBOARD_ROUTING: 'claim' }, async ({ operator, player }) => {
      const ops = [];
      for (let i = 1; i <= 10; i++) ops.push(await operator(`op${i}`, i % 3, i));
      const cl = await player('cl', 1);
      for (const op of ops) {
        assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: cl.sid, username: 'cl' });
        assert.deepEqual(await expectEvent(op, 'chatQueued'), { clientId: cl.sid, position: 1 });
      }
      assert.deepEqual(await expectEvent(cl, 'queued'), { position: 1 });

      const replies = await Promise.all(ops.map((op) => emitAck(op, 'claimChat', { clientId: cl.sid })));
      const winners = replies.flatMap((r, i) => (r.ok ? [i] : []));
      assert.equal(winners.length, 1, `winners: ${JSON.stringify(replies)}`);
      const w = winners[0];
      replies.forEach((r, i) => (i === w ? assertAckOk(r) : assertAckRefused(r, 'already_claimed', `op${i + 1}`)));
      const assigned = { clientId: cl.sid, operatorId: w + 1, operatorName: `op${w + 1}` };
      for (const op of ops) assert.deepEqual(await expectEvent(op, 'chatAssigned'), assigned);
      assert.deepEqual(await expectEvent(cl, 'operatorAssigned'), { operatorName: `op${w + 1}` });

      // The conversation is the owner's alone, wherever it is.
      const owner = ops[w];
      cl.emit('clientMessage', text('hola'));
      assert.equal((await expectEvent(owner, 'incomingMessage')).message, 'hola');
      owner.emit('operatorMessage', { to: cl.sid, ...text('buenas'), operatorId: w + 1, operatorName: `op${w + 1}` });
      assert.equal((await expectEvent(cl, 'operatorMessage')).message, 'buenas');
      const other = ops[(w + 1) % ops.length];
      assertAckRefused(await emitAck(other, 'operatorMessage', { to: cl.sid, ...text('me too') }), 'not_yours');
      assertAckRefused(await emitAck(other, 'claimChat', { clientId: cl.sid }), 'already_claimed');
      assertAckRefused(await emitAck(other, 'claimChat', { clientId: 'nobody' }), 'unknown_chat');
      await expectNothing([...ops, cl]);
    });
  });

  test('auto: 100 chats on three nodes balance over 4 operators of capacity 30 within ±1; the rest queue in order', async () => {
    await withCluster({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '30' }, async ({ nodes, operator, player }) => {
      const ops = [];
      for (let i = 1; i <= 4; i++) ops.push(await operator(`op${i}`, i % 3, i));
      await delay(SETTLE_MS);
      // Joined from three nodes at once, ten at a time.
      const players = [];
      for (let b = 0; b < 100; b += 10) {
        players.push(...await Promise.all(Array.from({ length: 10 }, (_, k) => player(`p${b + k}`, (b + k) % 3))));
      }
      await until(() => ops.every((op) => count(op, 'chatAssigned') === 100), '100 chatAssigned on every operator');
      const loads = ops.map((op, i) => count(op, 'chatAssigned', (a) => a.operatorId === i + 1));
      assert.equal(loads.reduce((a, b) => a + b), 100);
      for (const n of loads) assert.ok(Math.abs(n - 25) <= 1, `loads ${loads}`);
      ops.forEach((op, i) => assert.equal(count(op, 'newChat'), loads[i], `op${i + 1} newChat`));
      const owners = new Map();
      for (const op of ops) {
        for (const r of op.rec.all.filter((x) => x.event === 'chatAssigned')) {
          const prev = owners.get(r.args[0].clientId);
          assert.ok(prev === undefined || prev === r.args[0].operatorId, `${r.args[0].clientId} assigned twice`);
          owners.set(r.args[0].clientId, r.args[0].operatorId);
        }
      }
      assert.equal(owners.size, 100);
      for (const p of players) {
        await until(() => count(p, 'operatorAssigned') === 1, `${p.label} operatorAssigned`);
        assert.equal(count(p, 'queued'), 0, `${p.label} was queued`);
      }

      // 20 more fill every operator to 30; 5 more wait, in the order they came.
      for (let b = 100; b < 120; b += 10) {
        await Promise.all(Array.from({ length: 10 }, (_, k) => player(`p${b + k}`, (b + k) % 3)));
      }
      await until(() => ops.every((op) => count(op, 'chatAssigned') === 120), '120 chatAssigned');
      const waiting = [];
      for (let i = 0; i < 5; i++) {
        const p = await player(`w${i}`, i % 3);
        assert.deepEqual(await expectEvent(p, 'queued'), { position: i + 1 });
        waiting.push(p);
      }
      await until(() => ops.every((op) => count(op, 'chatQueued') === 5), '5 chatQueued');
      for (const op of ops) {
        assert.deepEqual(op.rec.all.filter((r) => r.event === 'chatQueued').map((r) => r.args[0]),
          waiting.map((p, i) => ({ clientId: p.sid, position: i + 1 })));
      }
      for (const n of nodes) {
        const st = await n.getJSON('/stats');
        assert.deepEqual(waiting.map((p) => st.clients.find((c) => c.socketId === p.sid).queuePosition), [1, 2, 3, 4, 5]);
        assert.deepEqual(st.operators.map((o) => o.load), [30, 30, 30, 30]);
      }

      // op1 ends one of its chats: the head of the queue is its, the others move up.
      const mine = ops[0].rec.all.find((r) => r.event === 'chatAssigned' && r.args[0].operatorId === 1).args[0].clientId;
      ops[0].emit('endChat', { clientId: mine });
      await until(() => count(waiting[0], 'operatorAssigned') === 1, 'the head of the queue assigned');
      for (const [i, p] of waiting.slice(1).entries()) {
        assert.deepEqual(await expectEvent(p, 'queued'), { position: i + 1 });
      }
      await until(() => ops[0].rec.all.some((r) => r.event === 'newChat' && r.args[0].clientId === waiting[0].sid), 'op1 introduced to it');
    });
  });

  test('auto: a player\'s message reaches its owner on another node (every socket of it) and a watcher, nobody else', async () => {
    await withCluster({ SWITCHBOARD_ROUTING: 'auto' }, async ({ operator, player }) => {
      const ana = await operator('ana', 0, 'ana');
      await delay(SETTLE_MS);
      const cl = await player('cl', 1);
      assert.deepEqual(await expectEvent(ana, 'newChat'), { clientId: cl.sid, username: 'cl' });
      assert.deepEqual(await expectEvent(ana, 'chatAssigned'), { clientId: cl.sid, operatorId: 'ana', operatorName: 'ana' });
      assert.deepEqual(await expectEvent(cl, 'operatorAssigned'), { operatorName: 'ana' });
      // Ana's second tab on a third node, a supervisor and a bystander.
      const ana2 = await operator('ana', 2, 'ana');
      assert.deepEqual(await expectEvent(ana2, 'newChat'), { clientId: cl.sid, username: 'cl' });
      assert.deepEqual(await expectEvent(ana2, 'chatAssigned'), { clientId: cl.sid, operatorId: 'ana', operatorName: 'ana' });
      const sup = await operator('sup', 2, 'sup');
      const bob = await operator('bob', 1, 'bob');
      assertAckOk(await emitAck(sup, 'watchChat', { clientId: cl.sid }));
      assert.deepEqual(await expectEvent(sup, 'newChat'), { clientId: cl.sid, username: 'cl' });

      cl.emit('clientMessage', text('hola'));
      for (const s of [ana, ana2, sup]) {
        const m = await expectEvent(s, 'incomingMessage');
        assert.equal(m.message, 'hola');
        assert.equal(m.from, cl.sid);
      }
      ana.emit('operatorMessage', { to: cl.sid, ...text('buenas'), operatorId: 'ana', operatorName: 'ana' });
      assert.equal((await expectEvent(cl, 'operatorMessage')).message, 'buenas');
      for (const s of [ana2, sup]) assert.equal((await expectEvent(s, 'operatorBroadcast')).message, 'buenas');
      assertAckRefused(await emitAck(sup, 'operatorMessage', { to: cl.sid, ...text('yo') }), 'not_yours');
      assertAckRefused(await emitAck(bob, 'releaseChat', { clientId: cl.sid }), 'not_yours');
      assertAckRefused(await emitAck(bob, 'transferChat', { clientId: cl.sid, toOperatorId: 'nobody' }), 'unknown_operator');
      await expectNothing([ana, ana2, sup, bob, cl]);
      assert.equal(count(bob, 'incomingMessage') + count(bob, 'operatorBroadcast') + count(bob, 'newChat'), 0);

      // Ana hands it to Bob (on the player's node): Bob is introduced and gets what follows.
      assertAckOk(await emitAck(ana, 'transferChat', { clientId: cl.sid, toOperatorId: 'bob' }));
      assert.deepEqual(await expectEvent(bob, 'newChat'), { clientId: cl.sid, username: 'cl' });
      assert.deepEqual(await expectEvent(cl, 'operatorAssigned'), { operatorName: 'bob' });
      cl.emit('clientMessage', text('¿sigues?'));
      assert.equal((await expectEvent(bob, 'incomingMessage')).message, '¿sigues?');
      assert.equal((await expectEvent(sup, 'incomingMessage')).message, '¿sigues?');
      await until(() => count(ana, 'chatAssigned') === 2 && count(ana2, 'chatAssigned') === 2, 'ana hears of the transfer');
      assert.equal(count(ana, 'incomingMessage'), 1);
      assert.equal(count(ana2, 'incomingMessage'), 1);
    });
  });
});
