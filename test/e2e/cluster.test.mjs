// Cluster mode end to end: a redis-server of the test's own on a free
// loopback port, three switchboard binaries sharing it (REDIS_URL), and the
// npm socket.io-client as the CRM and the widget, spread over the nodes.
// Skipped when redis-server is not installed (.ci/run installs it).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { HIGH_LIMITS, connect, expectEvent, expectNothing, startServer, freePort, startRedis } from './helpers.mjs';

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;


describe('cluster: three nodes on one Redis', { skip: hasRedis ? false : 'redis-server is not installed' }, () => {
  let redis;
  let nodes = [];
  const sockets = [];

  before(async () => {
    redis = await startRedis();
    nodes = await Promise.all(['n1', 'n2', 'n3'].map((id) => startServer({
      env: { ...HIGH_LIMITS, REDIS_URL: redis.url, SWITCHBOARD_NODE_ID: id },
    })));
    for (const n of nodes) {
      await n.waitFor('/health', (h) => h.status === 'ok' && h.cluster?.nodes === 3, { timeoutMs: 10000, what: '3 nodes' });
    }
  });

  after(async () => {
    for (const s of sockets) s.disconnect();
    await Promise.all(nodes.map((n) => n.stop()));
    redis?.proc.kill('SIGKILL');
  });

  /** Connects to node n over transports and joins; resolves once every node lists it. */
  async function join(label, n, transports, payload) {
    const s = await connect(label, transports, { url: nodes[n].url });
    sockets.push(s);
    s.emit('join', payload);
    const key = payload.role === 'operator' ? 'operators' : 'clients';
    for (const node of nodes) {
      await node.waitFor('/stats', (st) => st[key].some((p) => p.socketId === s.sid), { what: `${label} listed on ${node.url}` });
    }
    return s;
  }

  test('the contract across nodes, each event once', async () => {
    const op1 = await join('op1', 0, ['websocket'], { role: 'operator', name: 'Ana', operatorId: 1 });
    const op2 = await join('op2', 1, ['polling'], { role: 'operator', name: 'Luis', operatorId: 2 });
    const cl = await join('cl', 2, ['polling', 'websocket'], { role: 'client', name: 'Bob', username: 'bob77', phone: '+34 600' });
    for (const op of [op1, op2]) {
      assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: cl.sid, username: 'bob77', phone: '+34 600' });
    }
    // An operator joining on a third node gets the list of all players.
    const op3 = await join('op3', 2, ['websocket'], { role: 'operator', name: 'Eva', operatorId: 3 });
    assert.deepEqual(await expectEvent(op3, 'newChat'), { clientId: cl.sid, username: 'bob77', phone: '+34 600' });

    cl.emit('clientMessage', { type: 'text', message: '¡hola! 👋' });
    for (const op of [op1, op2, op3]) {
      const m = await expectEvent(op, 'incomingMessage');
      assert.equal(m.from, cl.sid);
      assert.equal(m.message, '¡hola! 👋');
    }
    cl.emit('clientTyping', { isTyping: true });
    for (const op of [op1, op2, op3]) {
      assert.deepEqual(await expectEvent(op, 'clientTyping'), { from: cl.sid, isTyping: true });
    }

    // op2 (node 2) answers the player on node 3; operators elsewhere see the broadcast.
    op2.emit('operatorMessage', { to: cl.sid, type: 'text', message: 'buenas', operatorId: 2, operatorName: 'Luis' });
    const toClient = await expectEvent(cl, 'operatorMessage');
    assert.equal(toClient.message, 'buenas');
    for (const op of [op1, op3]) {
      const b = await expectEvent(op, 'operatorBroadcast');
      assert.equal(b.clientId, cl.sid);
      assert.equal(b.timestamp, toClient.timestamp);
    }
    op1.emit('operatorTyping', { to: cl.sid, isTyping: true });
    assert.deepEqual(await expectEvent(cl, 'operatorTyping'), { isTyping: true });

    const health = await nodes[0].getJSON('/health');
    assert.equal(health.status, 'ok');
    assert.deepEqual(health.connections, { total: 4, clients: 1, operators: 3 });
    assert.deepEqual(health.local, { total: 1, clients: 0, operators: 1 });

    const id = cl.sid;
    cl.disconnect();
    for (const op of [op1, op2, op3]) {
      assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: id, reason: 'disconnect' });
    }
    await expectNothing([op1, op2, op3]);
  });

  test('a long-poll sent to the wrong node fails at once with a clear error', async () => {
    const res = await fetch(`${nodes[0].url}/chat/?EIO=4&transport=polling`);
    const sid = JSON.parse((await res.text()).slice(1)).sid;
    const t0 = Date.now();
    const wrong = await fetch(`${nodes[1].url}/chat/?EIO=4&transport=polling&sid=${sid}`);
    assert.equal(wrong.status, 400);
    assert.deepEqual(await wrong.json(), { code: 1, message: 'Session ID unknown' });
    assert.ok(Date.now() - t0 < 1000, 'answered at once');
  });
});
