// Routing end to end (SWITCHBOARD_ROUTING claim and auto): chats assigned to
// operators, with the npm socket.io-client as the CRM and the widget. Each
// test starts its own server, so that no state leaks between them.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import {
  HIGH_LIMITS, assertAckOk, assertAckRefused, connect, emitAck, expectChatError, expectEvent, expectNothing, startServer,
} from './helpers.mjs';

// websocket-only by default; make test runs the file again over socket.io-client's
// own default (E2E_TRANSPORTS=polling,websocket: polling, then the upgrade).
const WS = (process.env.E2E_TRANSPORTS ?? 'websocket').split(',');

async function withServer(env, fn) {
  const server = await startServer({ env: { ...HIGH_LIMITS, ...env } });
  const sockets = [];
  try {
    await fn(server, sockets);
  } finally {
    for (const s of sockets) s.disconnect();
    await server.stop();
  }
}

/** Connects and joins as an operator; resolves once the router has the join. */
async function operator(server, sockets, label, operatorId) {
  const s = await connect(label, WS, { url: server.url });
  sockets.push(s);
  assertAckOk(await emitAck(s, 'join', { role: 'operator', name: label, operatorId }), { what: `${label} join` });
  return s;
}

/** Connects and joins as a player; resolves once the router has the join. */
async function player(server, sockets, label) {
  const s = await connect(label, WS, { url: server.url });
  sockets.push(s);
  const ack = await emitAck(s, 'join', { role: 'client', name: label });
  assert.equal(ack.ok, true, `${label} join: ${JSON.stringify(ack)}`);
  return s;
}

/** Removes and returns the payloads of every pending event `name` on s. */
function drain(s, name) {
  const out = [];
  for (let i; (i = s.rec.pending.findIndex((r) => r.event === name)) >= 0;) {
    out.push(s.rec.pending.splice(i, 1)[0].args[0]);
  }
  return out;
}

/** Count of events `name` that s received, consumed or not. */
function count(s, name, pred = () => true) {
  return s.rec.all.filter((r) => r.event === name && pred(r.args[0])).length;
}

async function until(pred, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(10);
  }
}

const text = (message) => ({ type: 'text', message });

describe('routing', () => {
  test('broadcast (the default): routing events are refused with routing_off, and nobody hears a routing event', async () => {
    await withServer({}, async (server, sockets) => {
      const op = await operator(server, sockets, 'op', 1);
      const cl = await player(server, sockets, 'cl');
      assert.equal((await expectEvent(op, 'newChat')).clientId, cl.sid);
      assertAckRefused(await emitAck(op, 'claimChat', { clientId: cl.sid }), 'routing_off');
      op.emit('setStatus', { status: 'away' });
      await expectChatError(op, 'setStatus', 'routing_off');
      cl.emit('clientMessage', text('hola'));
      assert.equal((await expectEvent(op, 'incomingMessage')).message, 'hola');
      await expectNothing([op, cl]);
      const st = await server.getJSON('/stats');
      assert.deepEqual(Object.keys(st.clients[0]).sort(), ['connectedAt', 'name', 'socketId']);
      assert.deepEqual(Object.keys(st.operators[0]).sort(), ['connectedAt', 'name', 'operatorId', 'socketId']);
    });
  });

  test('claim: 10 operators claim one chat at once; exactly one wins, the others are told already_claimed', async () => {
    await withServer({ SWITCHBOARD_ROUTING: 'claim' }, async (server, sockets) => {
      const ops = [];
      for (let i = 1; i <= 10; i++) ops.push(await operator(server, sockets, `op${i}`, i));
      const cl = await player(server, sockets, 'cl');
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
      const owner = ops[w];
      const assigned = { clientId: cl.sid, operatorId: w + 1, operatorName: `op${w + 1}` };
      for (const op of ops) assert.deepEqual(await expectEvent(op, 'chatAssigned'), assigned);
      assert.deepEqual(await expectEvent(cl, 'operatorAssigned'), { operatorName: `op${w + 1}` });

      // The conversation is the owner's alone.
      cl.emit('clientMessage', text('hola'));
      assert.equal((await expectEvent(owner, 'incomingMessage')).message, 'hola');
      owner.emit('operatorMessage', { to: cl.sid, ...text('buenas'), operatorId: w + 1, operatorName: `op${w + 1}` });
      assert.equal((await expectEvent(cl, 'operatorMessage')).message, 'buenas');
      const other = ops[(w + 1) % ops.length];
      assertAckRefused(await emitAck(other, 'operatorMessage', { to: cl.sid, ...text('me too') }), 'not_yours');
      other.emit('claimChat', { clientId: cl.sid });
      await expectChatError(other, 'claimChat', 'already_claimed');
      await expectNothing([...ops, cl]);

      const st = await server.getJSON('/stats');
      const c = st.clients.find((x) => x.socketId === cl.sid);
      assert.equal(c.owner, w + 1);
      assert.equal(c.ownerName, `op${w + 1}`);
      const o = st.operators.find((x) => x.socketId === owner.sid);
      assert.deepEqual([o.status, o.load, o.capacity], ['available', 1, 5]);
    });
  });

  test('auto: 100 chats balance over 4 operators of capacity 30 within ±1; the rest queue in order with their positions', async () => {
    await withServer({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '30' }, async (server, sockets) => {
      const ops = [];
      for (let i = 1; i <= 4; i++) ops.push(await operator(server, sockets, `op${i}`, i));
      const players = [];
      for (let i = 0; i < 100; i++) players.push(await player(server, sockets, `p${i}`));
      await until(() => ops.every((op) => count(op, 'chatAssigned') === 100), '100 chatAssigned on every operator');
      const loads = ops.map((op, i) => count(op, 'chatAssigned', (a) => a.operatorId === i + 1));
      assert.equal(loads.reduce((a, b) => a + b), 100);
      for (const n of loads) assert.ok(Math.abs(n - 25) <= 1, `loads ${loads}`);
      // Each operator was introduced to its own chats only.
      ops.forEach((op, i) => assert.equal(count(op, 'newChat'), loads[i], `op${i + 1} newChat`));
      for (const p of players) {
        await until(() => count(p, 'operatorAssigned') === 1, `${p.label} operatorAssigned`);
        assert.equal(count(p, 'queued'), 0, `${p.label} was queued`);
      }

      // 25 more: 20 fill every operator to 30, 5 wait in the order they came.
      const more = [];
      for (let i = 100; i < 125; i++) more.push(await player(server, sockets, `p${i}`));
      await until(() => ops.every((op) => count(op, 'chatAssigned') === 120), '120 chatAssigned');
      await until(() => ops.every((op) => count(op, 'chatQueued') === 5), '5 chatQueued');
      for (const op of ops) {
        assert.deepEqual(op.rec.all.filter((r) => r.event === 'chatQueued').map((r) => r.args[0]),
          more.slice(20).map((p, i) => ({ clientId: p.sid, position: i + 1 })));
      }
      const waiting = more.slice(20);
      for (const [i, p] of waiting.entries()) {
        assert.deepEqual(await expectEvent(p, 'queued'), { position: i + 1 });
      }
      let st = await server.getJSON('/stats');
      assert.deepEqual(waiting.map((p) => st.clients.find((c) => c.socketId === p.sid).queuePosition), [1, 2, 3, 4, 5]);
      assert.deepEqual(st.operators.map((o) => o.load), [30, 30, 30, 30]);

      // op1 ends one of its chats: the first waiting chat is its, and the
      // others move up.
      const mine = ops[0].rec.all.find((r) => r.event === 'chatAssigned' && r.args[0].operatorId === 1).args[0].clientId;
      ops[0].emit('endChat', { clientId: mine });
      await until(() => count(waiting[0], 'operatorAssigned') === 1, 'the head of the queue assigned');
      for (const [i, p] of waiting.slice(1).entries()) {
        assert.deepEqual(await expectEvent(p, 'queued'), { position: i + 1 });
      }
      await until(() => ops[0].rec.all.some((r) => r.event === 'newChat' && r.args[0].clientId === waiting[0].sid), 'op1 introduced to it');
      st = await server.getJSON('/stats');
      assert.equal(st.clients.find((c) => c.socketId === waiting[0].sid).owner, 1);
    });
  });

  test('auto: an away operator gets no new chats until it is available again', async () => {
    await withServer({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '2' }, async (server, sockets) => {
      const op1 = await operator(server, sockets, 'op1', 1);
      const op2 = await operator(server, sockets, 'op2', 2);
      assertAckOk(await emitAck(op1, 'setStatus', { status: 'away' }));
      assertAckRefused(await emitAck(op1, 'setStatus', { status: 'busy' }), 'invalid_type');
      const ps = [];
      for (let i = 1; i <= 3; i++) ps.push(await player(server, sockets, `p${i}`));
      for (const p of ps.slice(0, 2)) {
        assert.equal((await expectEvent(op2, 'newChat')).clientId, p.sid);
        for (const op of [op1, op2]) assert.deepEqual(await expectEvent(op, 'chatAssigned'), { clientId: p.sid, operatorId: 2, operatorName: 'op2' });
        assert.deepEqual(await expectEvent(p, 'operatorAssigned'), { operatorName: 'op2' });
      }
      // op2 is full and op1 away: the third waits.
      assert.deepEqual(await expectEvent(ps[2], 'queued'), { position: 1 });
      for (const op of [op1, op2]) assert.deepEqual(await expectEvent(op, 'chatQueued'), { clientId: ps[2].sid, position: 1 });
      ps[2].emit('clientMessage', text('anyone?'));
      await expectNothing([op1, op2, ...ps]);
      const st = await server.getJSON('/stats');
      assert.deepEqual(st.operators.map((o) => [o.status, o.load]), [['away', 0], ['available', 2]]);

      assertAckOk(await emitAck(op1, 'setStatus', { status: 'available' }));
      assert.equal((await expectEvent(op1, 'newChat')).clientId, ps[2].sid);
      for (const op of [op1, op2]) assert.deepEqual(await expectEvent(op, 'chatAssigned'), { clientId: ps[2].sid, operatorId: 1, operatorName: 'op1' });
      // What the player said while it waited follows its newChat.
      assert.equal((await expectEvent(op1, 'incomingMessage')).message, 'anyone?');
      assert.deepEqual(await expectEvent(ps[2], 'operatorAssigned'), { operatorName: 'op1' });
      await expectNothing([op1, op2, ...ps]);
    });
  });

  test('transfer: the owner hands a chat to another operator; refusals name why', async () => {
    await withServer({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '1' }, async (server, sockets) => {
      const op1 = await operator(server, sockets, 'op1', 1);
      const op2 = await operator(server, sockets, 'op2', 2);
      const cl = await player(server, sockets, 'cl');
      assert.equal((await expectEvent(op1, 'newChat')).clientId, cl.sid);
      for (const op of [op1, op2]) assert.equal((await expectEvent(op, 'chatAssigned')).operatorId, 1);
      assert.deepEqual(await expectEvent(cl, 'operatorAssigned'), { operatorName: 'op1' });

      assertAckRefused(await emitAck(op2, 'transferChat', { clientId: cl.sid, toOperatorId: 2 }), 'not_yours');
      assertAckRefused(await emitAck(op1, 'transferChat', { clientId: cl.sid, toOperatorId: 99 }), 'unknown_operator');
      assertAckRefused(await emitAck(op1, 'transferChat', { clientId: cl.sid }), 'invalid_payload');
      assertAckRefused(await emitAck(op1, 'transferChat', { clientId: 'nobody', toOperatorId: 2 }), 'unknown_chat');
      assertAckOk(await emitAck(op1, 'transferChat', { clientId: cl.sid, toOperatorId: 2 }));
      assert.equal((await expectEvent(op2, 'newChat')).clientId, cl.sid);
      for (const op of [op1, op2]) assert.deepEqual(await expectEvent(op, 'chatAssigned'), { clientId: cl.sid, operatorId: 2, operatorName: 'op2' });
      assert.deepEqual(await expectEvent(cl, 'operatorAssigned'), { operatorName: 'op2' });

      cl.emit('clientMessage', text('still there?'));
      assert.equal((await expectEvent(op2, 'incomingMessage')).message, 'still there?');
      assertAckRefused(await emitAck(op1, 'operatorMessage', { to: cl.sid, ...text('yes') }), 'not_yours');
      // op2 is full now (capacity 1): a transfer back to it from a new chat is over capacity.
      const cl2 = await player(server, sockets, 'cl2');
      assert.equal((await expectEvent(op1, 'newChat')).clientId, cl2.sid);
      for (const op of [op1, op2]) assert.equal((await expectEvent(op, 'chatAssigned')).clientId, cl2.sid);
      await expectEvent(cl2, 'operatorAssigned');
      assertAckRefused(await emitAck(op1, 'transferChat', { clientId: cl2.sid, toOperatorId: 2 }), 'over_capacity');
      await expectNothing([op1, op2, cl, cl2]);
    });
  });

  test('an operator leaving releases its chats to the others, in their original order', async () => {
    await withServer({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '3' }, async (server, sockets) => {
      const op1 = await operator(server, sockets, 'op1', 1);
      const ps = [];
      for (let i = 1; i <= 3; i++) ps.push(await player(server, sockets, `p${i}`));
      await until(() => count(op1, 'newChat') === 3, 'op1 owns 3');
      const op2 = await operator(server, sockets, 'op2', 2);
      const p4 = await player(server, sockets, 'p4');
      await until(() => count(op2, 'newChat') === 1, 'op2 owns p4');
      drain(op2, 'newChat');
      drain(op2, 'chatAssigned');
      await until(() => [...ps, p4].every((p) => count(p, 'operatorAssigned') === 1), 'every player assigned');
      for (const p of [...ps, p4]) assert.equal(drain(p, 'operatorAssigned').length, 1);
      op1.disconnect();
      await server.waitLeft(op1.sid);
      // op2 has room for two: p1 and p2, in order; p3 waits first in line.
      await until(() => count(op2, 'newChat') === 3, 'op2 introduced to two more');
      assert.deepEqual(drain(op2, 'newChat').map((n) => n.clientId), [ps[0].sid, ps[1].sid]);
      assert.deepEqual(drain(op2, 'chatAssigned').map((a) => [a.clientId, a.operatorId]), [[ps[0].sid, 2], [ps[1].sid, 2]]);
      // Only the one still waiting once the others were reassigned is announced as queued.
      assert.deepEqual(drain(op2, 'chatQueued'), [{ clientId: ps[2].sid, position: 1 }]);
      await until(() => count(ps[2], 'queued') === 1, 'p3 told it waits');
      assert.deepEqual(drain(ps[2], 'queued'), [{ position: 1 }]);
      for (const p of ps.slice(0, 2)) assert.equal((await expectEvent(p, 'operatorAssigned')).operatorName, 'op2');

      const op3 = await operator(server, sockets, 'op3', 3);
      assert.deepEqual(await expectEvent(op3, 'chatQueued'), { clientId: ps[2].sid, position: 1 });
      assert.equal((await expectEvent(op3, 'newChat')).clientId, ps[2].sid);
      assert.equal((await expectEvent(op3, 'chatAssigned')).operatorId, 3);
      assert.deepEqual(await expectEvent(ps[2], 'operatorAssigned'), { operatorName: 'op3' });
      assert.equal((await expectEvent(op2, 'chatAssigned')).operatorId, 3);
      await expectNothing([op2, op3, ...ps, p4]);
    });
  });

  test('an operator whose transport drops keeps its chats for the recovery window, then they go to another', async () => {
    await withServer({ SWITCHBOARD_ROUTING: 'auto', SWITCHBOARD_RECOVERY_WINDOW: '1s' }, async (server, sockets) => {
      const op1 = await operator(server, sockets, 'op1', 1);
      const cl = await player(server, sockets, 'cl');
      assert.equal((await expectEvent(op1, 'newChat')).clientId, cl.sid);
      const op2 = await operator(server, sockets, 'op2', 2);
      op1.io.engine.close(); // a dropped transport, not a goodbye
      await delay(200);
      cl.emit('clientMessage', text('hello?'));
      await delay(300);
      assert.equal(count(op2, 'incomingMessage'), 0, 'op2 got the message within op1\'s window');
      await until(() => count(op2, 'newChat') === 1, 'the chat goes to op2 after the window', 5000);
      assert.equal(op2.rec.all.find((r) => r.event === 'newChat').args[0].clientId, cl.sid);
      await until(() => count(cl, 'operatorAssigned') === 2, 'the player told of op2');
    });
  });

  test('a supervisor watches a chat it does not own; a watcher\'s release stops it', async () => {
    await withServer({ SWITCHBOARD_ROUTING: 'claim' }, async (server, sockets) => {
      const op1 = await operator(server, sockets, 'op1', 1);
      const op2 = await operator(server, sockets, 'op2', 2);
      const sup = await operator(server, sockets, 'sup', 3);
      const all = [op1, op2, sup];
      const cl = await player(server, sockets, 'cl');
      for (const op of all) {
        await expectEvent(op, 'newChat');
        await expectEvent(op, 'chatQueued');
      }
      await expectEvent(cl, 'queued');
      assertAckOk(await emitAck(op1, 'claimChat', { clientId: cl.sid }));
      for (const op of all) await expectEvent(op, 'chatAssigned');
      await expectEvent(cl, 'operatorAssigned');
      assertAckOk(await emitAck(sup, 'watchChat', { clientId: cl.sid }));
      assertAckRefused(await emitAck(sup, 'watchChat', { clientId: 'nobody' }), 'unknown_chat');

      cl.emit('clientMessage', text('hola'));
      for (const op of [op1, sup]) assert.equal((await expectEvent(op, 'incomingMessage')).message, 'hola');
      op1.emit('operatorMessage', { to: cl.sid, ...text('dime'), operatorId: 1, operatorName: 'op1' });
      assert.equal((await expectEvent(cl, 'operatorMessage')).message, 'dime');
      const b = await expectEvent(sup, 'operatorBroadcast');
      assert.deepEqual([b.clientId, b.operatorId, b.message], [cl.sid, 1, 'dime']);
      assertAckRefused(await emitAck(sup, 'operatorMessage', { to: cl.sid, ...text('hi') }), 'not_yours');
      await expectNothing([...all, cl]);

      assertAckOk(await emitAck(sup, 'releaseChat', { clientId: cl.sid }));
      cl.emit('clientMessage', text('otra'));
      assert.equal((await expectEvent(op1, 'incomingMessage')).message, 'otra');
      await expectNothing([...all, cl]);
    });
  });

  test('claim: release, capacity, wrong roles and malformed requests are refused with a code; a bystander is unaffected', async () => {
    await withServer({ SWITCHBOARD_ROUTING: 'claim', SWITCHBOARD_MAX_CHATS_PER_OPERATOR: '1' }, async (server, sockets) => {
      const op1 = await operator(server, sockets, 'op1', 1);
      const op2 = await operator(server, sockets, 'op2', 2);
      const c1 = await player(server, sockets, 'c1');
      const c2 = await player(server, sockets, 'c2');
      assertAckOk(await emitAck(op1, 'claimChat', { clientId: c1.sid }));
      assertAckRefused(await emitAck(op1, 'claimChat', { clientId: c2.sid }), 'over_capacity');
      assertAckRefused(await emitAck(op1, 'claimChat', {}), 'invalid_payload');
      assertAckRefused(await emitAck(op1, 'claimChat', 'x'), 'invalid_payload');
      assertAckRefused(await emitAck(op1, 'claimChat', { clientId: 7 }), 'invalid_type');
      assertAckRefused(await emitAck(c1, 'claimChat', { clientId: c1.sid }), 'wrong_role');
      assertAckRefused(await emitAck(op2, 'releaseChat', { clientId: c1.sid }), 'not_yours');
      assertAckRefused(await emitAck(op2, 'endChat', { clientId: c1.sid }), 'not_yours');
      // The bystander's chat is untouched: op2 claims and talks to c2.
      assertAckOk(await emitAck(op2, 'claimChat', { clientId: c2.sid }));
      c2.emit('clientMessage', text('hola'));
      await until(() => count(op2, 'incomingMessage') === 1, 'op2 hears c2');
      assert.equal(count(op1, 'incomingMessage'), 0);
      // Released, c1 waits again (position 1) and every operator hears so.
      assertAckOk(await emitAck(op1, 'releaseChat', { clientId: c1.sid }));
      await until(() => count(op2, 'chatQueued', (q) => q.clientId === c1.sid) === 2, 'op2 told c1 waits again');
      await until(() => count(c1, 'queued') === 2, 'c1 told it waits again');
      assert.deepEqual(c1.rec.all.filter((r) => r.event === 'queued').map((r) => r.args[0]), [{ position: 1 }, { position: 1 }]);
      const st = await server.getJSON('/stats');
      assert.equal(st.clients.find((c) => c.socketId === c1.sid).queuePosition, 1);
    });
  });
});
