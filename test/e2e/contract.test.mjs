// The wire contract (/work/shared/CONTRACT.md), end to end: the real binary,
// the npm socket.io-client as the CRM and the widget use it, in each
// transport mode (websocket, polling, polling then upgrade).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import {
  HIGH_LIMITS, MODES, Scenario, assertAckOk, assertAckRefused, assertISO, connect, eio3Connect,
  emitAck, expectChatError, expectEvent, expectNothing, signHS256, startServer, startUpgradeGate, RECOVERY,
} from './helpers.mjs';

const ENDED_BY_OPERATOR = 'El operador ha finalizado la conversación';
// Characters that a careless encoder escapes or mangles.
const TRICKY_TEXT = '¡Hola! ¿Qué tal? 👋 <b>&amp;</b> "comillas" \\ barra\nsegunda línea \u2028 fin';
const PNG = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
// Real headers of each allowed image type (the server checks the magic number).
const PNG_BYTES = Buffer.from(PNG.slice(PNG.indexOf(',') + 1), 'base64');
const JPEG_BYTES = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]), Buffer.from('JFIF\0'), Buffer.alloc(40, 7)]);
const GIF_BYTES = Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x00;', 'latin1');
const WEBP_BYTES = Buffer.concat([Buffer.from('RIFF'), Buffer.from([0x1a, 0, 0, 0]), Buffer.from('WEBPVP8L'), Buffer.alloc(18, 0)]);
const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const dataURL = (mime, bytes) => `data:${mime};base64,${b64(bytes)}`;

/** Consumes one newChat per client on op, in this order, each {clientId, username: label}. */
async function expectNewChats(op, ...clients) {
  for (const c of clients) {
    assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: c.sid, username: c.label },
      `${op.label}: newChat for ${c.label}`);
  }
}

/** Expects a server timestamp on msg, checks its format and time, and returns it. */
function serverTimestamp(msg, from, to, what) {
  assertISO(msg.timestamp, { from, to, what: `${what} timestamp` });
  return msg.timestamp;
}

for (const [mode, transports] of Object.entries(MODES)) {
  describe(`contract over ${mode} (${transports.join(' then ')})`, () => {
    let server;
    before(async () => {
      // Bursts (the order and upgrade tests) must not meet the rate limits;
      // the limits themselves are tested on a server with the defaults.
      // With recovery on, a short window: a transport closed for good ends
      // its chat within the event timeout.
      server = await startServer({ env: { ...HIGH_LIMITS, ...(RECOVERY ? { SWITCHBOARD_RECOVERY_WINDOW: '1s' } : {}) } });
    });
    after(async () => {
      await server?.stop();
    });

    // A test with its own participants; every socket is checked (nothing
    // left unexpected, not dropped by the server, transport as the mode
    // says) and disconnected, and presence is empty again afterwards.
    const scenario = (name, fn) => test(name, async () => {
      const sc = new Scenario(server, transports);
      let passed = false;
      try {
        await server.waitCounts({ clients: 0, operators: 0 });
        await fn(sc);
        await sc.verify();
        passed = true;
      } finally {
        try {
          await sc.close();
        } catch (err) {
          if (passed) throw err;
        }
      }
    });

    // ------------------------------------------------------------ join

    scenario('client join: every joined operator gets newChat; username falls back to name; unsent fields are absent', async (sc) => {
      const op1 = await sc.operator('op1');
      const op2 = await sc.operator('op2');

      const ana = await sc.client('ana', { name: 'Ana', username: 'ana_p', phone: '+34 600 000 000' });
      assert.equal(typeof ana.sid, 'string');
      assert.ok(ana.sid.length > 0);
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'newChat'),
          { clientId: ana.sid, username: 'ana_p', phone: '+34 600 000 000' });
      }

      const bruno = await sc.client('bruno', { name: 'Bruno' });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: bruno.sid, username: 'Bruno' });
      }

      // username '' falls back to name, as JavaScript's `username || name`.
      const carla = await sc.client('carla', { name: 'Carla', username: '', phone: '611 222 333' });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'newChat'),
          { clientId: carla.sid, username: 'Carla', phone: '611 222 333' });
      }

      const dani = await sc.client('dani', { username: 'dani_x' });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: dani.sid, username: 'dani_x' });
      }

      const anon = await sc.client('anon', {});
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: anon.sid });
      }

      await expectNothing([op1, op2, ana, bruno, carla, dani, anon]);
    });

    scenario('operator join: that operator alone gets one newChat per joined client, in join order', async (sc) => {
      const op1 = await sc.operator('op1');
      const c1 = await sc.client('c1', { name: 'Uno', username: 'uno', phone: '111' });
      const c2 = await sc.client('c2', { name: 'Dos' });
      const c3 = await sc.client('c3', { name: 'Tres', phone: '333' });
      const c4 = await sc.client('c4', { name: 'Cuatro', username: 'cuatro' });
      const c5 = await sc.client('c5', { username: 'cinco', phone: '555' });
      const shapes = {
        c1: { clientId: c1.sid, username: 'uno', phone: '111' },
        c2: { clientId: c2.sid, username: 'Dos' },
        c3: { clientId: c3.sid, username: 'Tres', phone: '333' },
        c4: { clientId: c4.sid, username: 'cuatro' },
        c5: { clientId: c5.sid, username: 'cinco', phone: '555' },
      };
      for (const k of ['c1', 'c2', 'c3', 'c4', 'c5']) {
        assert.deepEqual(await expectEvent(op1, 'newChat'), shapes[k]);
      }

      const op2 = await sc.operator('op2', { name: 'Segundo', operatorId: 2 });
      for (const k of ['c1', 'c2', 'c3', 'c4', 'c5']) {
        assert.deepEqual(await expectEvent(op2, 'newChat'), shapes[k], `op2 newChat ${k}`);
      }

      // Only currently joined clients are listed.
      await sc.leave(c2);
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c2.sid, reason: 'disconnect' });
      }
      const op3 = await sc.operator('op3', { name: 'Tercero', operatorId: 3 });
      for (const k of ['c1', 'c3', 'c4', 'c5']) {
        assert.deepEqual(await expectEvent(op3, 'newChat'), shapes[k], `op3 newChat ${k}`);
      }

      // An operator joining with no client gets nothing: see the quiet window.
      await expectNothing([op1, op2, op3, c1, c3, c4, c5]);
    });

    // ------------------------------------------------------------ clientMessage

    scenario('clientMessage without timestamp: every operator gets incomingMessage with the server ISO time', async (sc) => {
      const op1 = await sc.operator('op1');
      const op2 = await sc.operator('op2');
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      await expectNewChats(op1, c1, c2);
      await expectNewChats(op2, c1, c2);

      let from = Date.now();
      c1.emit('clientMessage', { type: 'text', message: TRICKY_TEXT });
      const m1 = await expectEvent(op1, 'incomingMessage');
      const m2 = await expectEvent(op2, 'incomingMessage');
      const ts = serverTimestamp(m1, from, Date.now(), 'incomingMessage');
      assert.deepEqual(m1, { from: c1.sid, type: 'text', message: TRICKY_TEXT, timestamp: ts });
      assert.deepEqual(m2, { from: c1.sid, type: 'text', message: TRICKY_TEXT, timestamp: ts });

      // An empty timestamp is no timestamp (JavaScript's `timestamp || now`).
      from = Date.now();
      c2.emit('clientMessage', { type: 'text', message: 'dos', timestamp: '' });
      const e1 = await expectEvent(op1, 'incomingMessage');
      const e2 = await expectEvent(op2, 'incomingMessage');
      const ts2 = serverTimestamp(e1, from, Date.now(), 'incomingMessage');
      assert.deepEqual(e1, { from: c2.sid, type: 'text', message: 'dos', timestamp: ts2 });
      assert.deepEqual(e2, e1);

      // Only what a text message requires: nothing else appears.
      from = Date.now();
      c1.emit('clientMessage', { type: 'text', message: 'solo' });
      const b1 = await expectEvent(op1, 'incomingMessage');
      const b2 = await expectEvent(op2, 'incomingMessage');
      const ts3 = serverTimestamp(b1, from, Date.now(), 'incomingMessage');
      assert.deepEqual(b1, { from: c1.sid, type: 'text', message: 'solo', timestamp: ts3 });
      assert.deepEqual(b2, b1);

      await expectNothing([op1, op2, c1, c2]);
    });

    scenario('clientMessage with every optional field and a client timestamp: forwarded verbatim, size included', async (sc) => {
      const op1 = await sc.operator('op1');
      const op2 = await sc.operator('op2');
      const c1 = await sc.client('c1');
      await expectNewChats(op1, c1);
      await expectNewChats(op2, c1);

      const image = {
        type: 'image',
        message: 'mira esto',
        image: PNG,
        name: 'foto.png',
        mimeType: 'image/png',
        size: 68,
        timestamp: '2026-01-02T03:04:05.678Z',
      };
      c1.emit('clientMessage', image);
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'incomingMessage'), { from: c1.sid, ...image });
      }

      // The client's timestamp is forwarded as sent, even in another form;
      // empty and zero values that were sent are forwarded too.
      const odd = { type: 'text', message: '', size: 0, timestamp: '2026-01-02T03:04:05Z' };
      c1.emit('clientMessage', odd);
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'incomingMessage'), { from: c1.sid, ...odd });
      }

      await expectNothing([op1, op2, c1]);
    });

    scenario('an image over 1 MB reaches the operators and the player stays connected', async (sc) => {
      const op1 = await sc.operator('op1');
      const c1 = await sc.client('c1');
      await expectNewChats(op1, c1);

      const big = 'data:image/jpeg;base64,' + Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(1_200_000, 7)]).toString('base64'); // ~1.6 MB, a JPEG header
      const msg = { type: 'image', image: big, name: 'grande.jpg', mimeType: 'image/jpeg', size: 1_200_000, timestamp: '2026-03-04T05:06:07.089Z' };
      c1.emit('clientMessage', msg);
      const got = await expectEvent(op1, 'incomingMessage', 10000);
      assert.equal(got.image.length, big.length);
      assert.deepEqual(got, { from: c1.sid, ...msg });

      c1.emit('clientMessage', { type: 'text', message: 'después', timestamp: '2026-03-04T05:06:08.000Z' });
      assert.deepEqual(await expectEvent(op1, 'incomingMessage'),
        { from: c1.sid, type: 'text', message: 'después', timestamp: '2026-03-04T05:06:08.000Z' });
      assert.ok(c1.connected);
      await expectNothing([op1, c1]);
    });

    // ------------------------------------------------------------ operatorMessage

    scenario('operatorMessage: the client gets it without size; the other operators get operatorBroadcast with the same timestamp', async (sc) => {
      const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
      const op2 = await sc.operator('op2', { name: 'Pablo', operatorId: 'op-2' });
      const op3 = await sc.operator('op3', { name: 'Quique', operatorId: 9 });
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      for (const op of [op1, op2, op3]) await expectNewChats(op, c1, c2);

      // Image with every field.
      let from = Date.now();
      op1.emit('operatorMessage', {
        to: c1.sid, type: 'image', message: 'Aquí tienes', image: PNG, name: 'factura.png',
        mimeType: 'image/png', size: 68, operatorId: 7, operatorName: 'Olga',
      });
      const toClient = await expectEvent(c1, 'operatorMessage');
      const ts = serverTimestamp(toClient, from, Date.now(), 'operatorMessage');
      assert.deepEqual(toClient, {
        type: 'image', message: 'Aquí tienes', image: PNG, name: 'factura.png', mimeType: 'image/png',
        operatorName: 'Olga', timestamp: ts,
      });
      for (const op of [op2, op3]) {
        assert.deepEqual(await expectEvent(op, 'operatorBroadcast'), {
          clientId: c1.sid, operatorId: 7, operatorName: 'Olga', type: 'image', message: 'Aquí tienes',
          image: PNG, name: 'factura.png', mimeType: 'image/png', timestamp: ts,
        });
      }

      // Text, with a string operatorId (forwarded as sent).
      from = Date.now();
      op2.emit('operatorMessage', { to: c2.sid, type: 'text', message: TRICKY_TEXT, operatorId: 'op-2', operatorName: 'Pablo' });
      const toC2 = await expectEvent(c2, 'operatorMessage');
      const ts2 = serverTimestamp(toC2, from, Date.now(), 'operatorMessage');
      assert.deepEqual(toC2, { type: 'text', message: TRICKY_TEXT, operatorName: 'Pablo', timestamp: ts2 });
      for (const op of [op1, op3]) {
        assert.deepEqual(await expectEvent(op, 'operatorBroadcast'), {
          clientId: c2.sid, operatorId: 'op-2', operatorName: 'Pablo', type: 'text', message: TRICKY_TEXT, timestamp: ts2,
        });
      }

      // Only what is required: nothing unsent appears.
      from = Date.now();
      op3.emit('operatorMessage', { to: c1.sid, type: 'text', message: '' });
      const bare = await expectEvent(c1, 'operatorMessage');
      const ts3 = serverTimestamp(bare, from, Date.now(), 'operatorMessage');
      assert.deepEqual(bare, { type: 'text', message: '', timestamp: ts3 });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'operatorBroadcast'), { clientId: c1.sid, type: 'text', message: '', timestamp: ts3 });
      }

      await expectNothing([op1, op2, op3, c1, c2]);
    });

    scenario('operatorMessage and operatorTyping to an id that is not a joined client: unknown_target to the sender alone', async (sc) => {
      const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
      const op2 = await sc.operator('op2', { name: 'Pablo', operatorId: 8 });
      const c1 = await sc.client('c1');
      const gone = await sc.client('gone');
      await expectNewChats(op1, c1, gone);
      await expectNewChats(op2, c1, gone);
      await sc.leave(gone);
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: gone.sid, reason: 'disconnect' });
      }
      const unjoined = await sc.connect('unjoined');

      const msg = { type: 'text', message: 'no debería llegar', operatorId: 7, operatorName: 'Olga' };
      const targets = ['no-such-socket', op2.sid, op1.sid, gone.sid, unjoined.sid];
      for (const to of targets) {
        op1.emit('operatorMessage', { to, ...msg });
        op1.emit('operatorTyping', { to, isTyping: true });
      }
      // Each answered, in order, to op1 alone.
      for (const to of targets) {
        await expectChatError(op1, 'operatorMessage', 'unknown_target', `operatorMessage to ${to}`);
        await expectChatError(op1, 'operatorTyping', 'unknown_target', `operatorTyping to ${to}`);
      }
      // Then a valid one: the first (and only) deliveries must be these.
      op1.emit('operatorTyping', { to: c1.sid, isTyping: false });
      op1.emit('operatorMessage', { to: c1.sid, type: 'text', message: 'válido', operatorId: 7, operatorName: 'Olga' });
      assert.deepEqual(await expectEvent(c1, 'operatorTyping'), { isTyping: false });
      const got = await expectEvent(c1, 'operatorMessage');
      assertISO(got.timestamp);
      assert.deepEqual(got, { type: 'text', message: 'válido', operatorName: 'Olga', timestamp: got.timestamp });
      assert.deepEqual(await expectEvent(op2, 'operatorBroadcast'), {
        clientId: c1.sid, operatorId: 7, operatorName: 'Olga', type: 'text', message: 'válido', timestamp: got.timestamp,
      });

      await expectNothing([op1, op2, c1, unjoined]);
    });

    // ------------------------------------------------------------ typing

    scenario('clientTyping: every operator gets {from, isTyping}', async (sc) => {
      const op1 = await sc.operator('op1');
      const op2 = await sc.operator('op2');
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      await expectNewChats(op1, c1, c2);
      await expectNewChats(op2, c1, c2);

      c1.emit('clientTyping', { isTyping: true });
      c1.emit('clientTyping', { isTyping: false });
      c2.emit('clientTyping', { isTyping: true });
      for (const op of [op1, op2]) {
        const got = [];
        for (let i = 0; i < 3; i++) got.push(await expectEvent(op, 'clientTyping'));
        // Each client's events in order; the two clients may interleave.
        assert.deepEqual(got.filter((e) => e.from === c1.sid), [{ from: c1.sid, isTyping: true }, { from: c1.sid, isTyping: false }]);
        assert.deepEqual(got.filter((e) => e.from === c2.sid), [{ from: c2.sid, isTyping: true }]);
      }
      await expectNothing([op1, op2, c1, c2]);
    });

    scenario('operatorTyping: only the client `to` gets {isTyping}', async (sc) => {
      const op1 = await sc.operator('op1');
      const op2 = await sc.operator('op2');
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      await expectNewChats(op1, c1, c2);
      await expectNewChats(op2, c1, c2);

      op1.emit('operatorTyping', { to: c1.sid, isTyping: true });
      op1.emit('operatorTyping', { to: c1.sid, isTyping: false });
      op2.emit('operatorTyping', { to: c2.sid, isTyping: true });
      assert.deepEqual(await expectEvent(c1, 'operatorTyping'), { isTyping: true });
      assert.deepEqual(await expectEvent(c1, 'operatorTyping'), { isTyping: false });
      assert.deepEqual(await expectEvent(c2, 'operatorTyping'), { isTyping: true });
      await expectNothing([op1, op2, c1, c2]);
    });

    // ------------------------------------------------------------ endChat

    scenario('endChat from a client: every operator gets chatEnded {clientId}; the client stays connected and listed', async (sc) => {
      const op1 = await sc.operator('op1');
      const op2 = await sc.operator('op2');
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      await expectNewChats(op1, c1, c2);
      await expectNewChats(op2, c1, c2);

      c1.emit('endChat', {});
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c1.sid });
      }
      // A client ends only its own chat, whatever clientId it names.
      c2.emit('endChat', { clientId: c1.sid });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c2.sid });
      }
      // And it may send no payload at all.
      c2.emit('endChat');
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c2.sid });
      }
      await expectNothing([op1, op2, c1, c2]);

      assert.ok(c1.connected, 'c1 still connected');
      const stats = await server.getJSON('/stats');
      assert.deepEqual(stats.clients.map((c) => c.socketId), [c1.sid, c2.sid]);
      assert.equal(stats.summary.totalClients, 2);

      // It still talks, and its disconnect is still announced.
      c1.emit('clientMessage', { type: 'text', message: 'sigo aquí', timestamp: '2026-01-01T00:00:00.000Z' });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'incomingMessage'),
          { from: c1.sid, type: 'text', message: 'sigo aquí', timestamp: '2026-01-01T00:00:00.000Z' });
      }
      c1.disconnect();
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c1.sid, reason: 'disconnect' });
      }
      await expectNothing([op1, op2, c2]);
    });

    scenario('endChat from an operator: every operator, the sender too, gets chatEnded {clientId}; the client gets the message', async (sc) => {
      const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
      const op2 = await sc.operator('op2', { name: 'Pablo', operatorId: 8 });
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      await expectNewChats(op1, c1, c2);
      await expectNewChats(op2, c1, c2);

      op1.emit('endChat', { clientId: c1.sid, operatorId: 7 });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c1.sid });
      }
      assert.deepEqual(await expectEvent(c1, 'chatEnded'), { message: ENDED_BY_OPERATOR });

      op2.emit('endChat', { clientId: c2.sid });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c2.sid });
      }
      assert.deepEqual(await expectEvent(c2, 'chatEnded'), { message: ENDED_BY_OPERATOR });

      // A client that already left: operators still hear of it (as on the Node server).
      const gone = await sc.client('gone');
      await expectNewChats(op1, gone);
      await expectNewChats(op2, gone);
      await sc.leave(gone);
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: gone.sid, reason: 'disconnect' });
      }
      op2.emit('endChat', { clientId: gone.sid, operatorId: 8 });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: gone.sid });
      }

      // Without a clientId there is nothing to end: refused to the sender alone.
      op1.emit('endChat', {});
      await expectChatError(op1, 'endChat', 'invalid_payload', 'endChat {}');
      op1.emit('endChat', { operatorId: 7 });
      await expectChatError(op1, 'endChat', 'invalid_payload', 'endChat {operatorId}');
      await expectNothing([op1, op2, c1, c2]);

      // The client is not disconnected by it.
      assert.ok(c1.connected && c2.connected);
      const stats = await server.getJSON('/stats');
      assert.deepEqual(stats.clients.map((c) => c.socketId), [c1.sid, c2.sid]);
    });

    // ------------------------------------------------------------ disconnect

    scenario('client disconnect: every operator gets chatEnded {clientId, reason: "disconnect"}; the client leaves presence', async (sc) => {
      const op1 = await sc.operator('op1');
      const op2 = await sc.operator('op2');
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      const c3 = await sc.client('c3');
      await expectNewChats(op1, c1, c2, c3);
      await expectNewChats(op2, c1, c2, c3);

      c1.disconnect();
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c1.sid, reason: 'disconnect' });
      }
      // The transport closing for good (a page closed) counts as a
      // disconnect too; with recovery, once the window has passed.
      c2.io.reconnection(false);
      c2.io.engine.close();
      for (const op of [op1, op2]) {
        if (RECOVERY) {
          assert.deepEqual(await expectEvent(op, 'chatAway'), { clientId: c2.sid });
        }
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c2.sid, reason: 'disconnect' });
      }
      c2.rec.disconnects.length = 0; // closed by the test, not by the server

      const health = await server.waitCounts({ clients: 1, operators: 2 });
      assert.equal(health.connections.total, 3);
      const stats = await server.getJSON('/stats');
      assert.deepEqual(stats.clients.map((c) => c.socketId), [c3.sid]);
      await expectNothing([op1, op2, c3]);
    });

    scenario('operator disconnect: nobody gets anything; the operator leaves presence', async (sc) => {
      const op1 = await sc.operator('op1');
      const op2 = await sc.operator('op2');
      const c1 = await sc.client('c1');
      await expectNewChats(op1, c1);
      await expectNewChats(op2, c1);

      const seenByOp1 = op1.rec.all.length;
      await sc.leave(op1);
      await expectNothing([op2, c1]);
      const health = await server.getJSON('/health');
      assert.deepEqual(health.connections, { total: 2, clients: 1, operators: 1 });

      // Messages now reach the remaining operator only, and nothing breaks.
      c1.emit('clientMessage', { type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      assert.deepEqual(await expectEvent(op2, 'incomingMessage'),
        { from: c1.sid, type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      assert.equal(op1.rec.all.length, seenByOp1, 'op1 received nothing after its disconnect');
      await expectNothing([op2, c1]);
    });

    // ------------------------------------------------------------ wrong role, not joined

    scenario('events from the wrong role: wrong_role to the sender alone, nothing to anyone else', async (sc) => {
      const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
      const op2 = await sc.operator('op2', { name: 'Pablo', operatorId: 8 });
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      await expectNewChats(op1, c1, c2);
      await expectNewChats(op2, c1, c2);

      c1.emit('operatorMessage', { to: c2.sid, type: 'text', message: 'soy cliente', operatorId: 1, operatorName: 'X' });
      c1.emit('operatorTyping', { to: c2.sid, isTyping: true });
      op1.emit('clientMessage', { type: 'text', message: 'soy operador' });
      op1.emit('clientTyping', { isTyping: true });
      await expectChatError(c1, 'operatorMessage', 'wrong_role');
      await expectChatError(c1, 'operatorTyping', 'wrong_role');
      await expectChatError(op1, 'clientMessage', 'wrong_role');
      await expectChatError(op1, 'clientTyping', 'wrong_role');

      // Valid events from the same senders: the first deliveries are these.
      c1.emit('clientMessage', { type: 'text', message: 'válido', timestamp: '2026-01-01T00:00:00.000Z' });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'incomingMessage'),
          { from: c1.sid, type: 'text', message: 'válido', timestamp: '2026-01-01T00:00:00.000Z' });
      }
      op1.emit('operatorMessage', { to: c2.sid, type: 'text', message: 'válido', operatorId: 7, operatorName: 'Olga' });
      const got = await expectEvent(c2, 'operatorMessage');
      assertISO(got.timestamp);
      assert.deepEqual(got, { type: 'text', message: 'válido', operatorName: 'Olga', timestamp: got.timestamp });
      assert.deepEqual(await expectEvent(op2, 'operatorBroadcast'),
        { clientId: c2.sid, operatorId: 7, operatorName: 'Olga', type: 'text', message: 'válido', timestamp: got.timestamp });

      await expectNothing([op1, op2, c1, c2]);
    });

    scenario('sockets that never joined: not_joined for each of their events, nothing of anyone else\'s, not counted', async (sc) => {
      const u = await sc.connect('unjoined');
      const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
      const c1 = await sc.client('c1');
      await expectNewChats(op1, c1);

      u.emit('clientMessage', { type: 'text', message: 'x' });
      u.emit('clientTyping', { isTyping: true });
      u.emit('operatorMessage', { to: c1.sid, type: 'text', message: 'x', operatorId: 1, operatorName: 'X' });
      u.emit('operatorTyping', { to: c1.sid, isTyping: true });
      u.emit('endChat', { clientId: c1.sid });
      u.emit('endChat', {});
      for (const event of ['clientMessage', 'clientTyping', 'operatorMessage', 'operatorTyping', 'endChat', 'endChat']) {
        await expectChatError(u, event, 'not_joined');
      }

      // Everything a joined socket can cause, while u watches.
      const c2 = await sc.client('c2');
      await expectNewChats(op1, c2);
      c1.emit('clientMessage', { type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      assert.deepEqual(await expectEvent(op1, 'incomingMessage'),
        { from: c1.sid, type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      c1.emit('clientTyping', { isTyping: true });
      assert.deepEqual(await expectEvent(op1, 'clientTyping'), { from: c1.sid, isTyping: true });
      op1.emit('operatorTyping', { to: c1.sid, isTyping: true });
      assert.deepEqual(await expectEvent(c1, 'operatorTyping'), { isTyping: true });
      op1.emit('operatorMessage', { to: c1.sid, type: 'text', message: 'hola', operatorId: 7, operatorName: 'Olga' });
      const om = await expectEvent(c1, 'operatorMessage');
      assertISO(om.timestamp);
      assert.deepEqual(om, { type: 'text', message: 'hola', operatorName: 'Olga', timestamp: om.timestamp });
      c1.emit('endChat', {});
      assert.deepEqual(await expectEvent(op1, 'chatEnded'), { clientId: c1.sid });
      op1.emit('endChat', { clientId: c1.sid });
      assert.deepEqual(await expectEvent(op1, 'chatEnded'), { clientId: c1.sid });
      assert.deepEqual(await expectEvent(c1, 'chatEnded'), { message: ENDED_BY_OPERATOR });
      await sc.leave(c2);
      assert.deepEqual(await expectEvent(op1, 'chatEnded'), { clientId: c2.sid, reason: 'disconnect' });

      await expectNothing([u, op1, c1]);
      assert.deepEqual(u.rec.all.map((r) => r.event), Array(6).fill('chatError'),
        'the unjoined socket received its answers and nothing else');
      assert.ok(u.connected);
      const health = await server.getJSON('/health');
      assert.deepEqual(health.connections, { total: 2, clients: 1, operators: 1 });
      const stats = await server.getJSON('/stats');
      assert.deepEqual([...stats.clients, ...stats.operators].map((p) => p.socketId), [c1.sid, op1.sid]);
    });

    // ------------------------------------------------------------ HTTP

    scenario('/health and /stats: counts and shapes after joins and after disconnects', async (sc) => {
      const t0 = Date.now();
      let health = await server.getJSON('/health');
      assertISO(health.timestamp, { from: t0, to: Date.now() });
      assert.deepEqual(health, { status: 'ok', timestamp: health.timestamp, connections: { total: 0, clients: 0, operators: 0 } });
      let stats = await server.getJSON('/stats');
      assertISO(stats.timestamp, { from: t0, to: Date.now() });
      assert.deepEqual(stats, {
        timestamp: stats.timestamp,
        summary: { totalConnections: 0, totalClients: 0, totalOperators: 0 },
        clients: [],
        operators: [],
      });

      // Connected but not joined: not counted.
      const u = await sc.connect('unjoined');
      // Roles interleaved; each list keeps join order.
      const c1 = await sc.client('c1', { name: 'Ana', username: 'ana_p', phone: '600' });
      const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
      const c2 = await sc.client('c2', { name: 'Bruno' });
      const op2 = await sc.operator('op2', { name: 'Pablo', operatorId: 'op-2' });
      const c3 = await sc.client('c3', { username: 'sin_nombre' });
      const t1 = Date.now();
      assert.deepEqual(await expectEvent(op1, 'newChat'), { clientId: c1.sid, username: 'ana_p', phone: '600' });
      for (const op of [op1, op2]) {
        if (op === op2) assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: c1.sid, username: 'ana_p', phone: '600' });
        assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: c2.sid, username: 'Bruno' });
        assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: c3.sid, username: 'sin_nombre' });
      }

      health = await server.getJSON('/health');
      assertISO(health.timestamp, { from: t0, to: Date.now() });
      assert.deepEqual(health, { status: 'ok', timestamp: health.timestamp, connections: { total: 5, clients: 3, operators: 2 } });

      stats = await server.getJSON('/stats');
      assertISO(stats.timestamp, { from: t1, to: Date.now() });
      const at = {};
      for (const p of [...stats.clients, ...stats.operators]) {
        assertISO(p.connectedAt, { from: t0, to: t1, what: `connectedAt of ${p.socketId}` });
        at[p.socketId] = p.connectedAt;
      }
      const order = [c1, op1, c2, op2, c3].map((s) => Date.parse(at[s.sid]));
      assert.deepEqual([...order].sort((a, b) => a - b), order, 'connectedAt follows join order');
      const clients = [
        { socketId: c1.sid, name: 'Ana', username: 'ana_p', connectedAt: at[c1.sid] },
        { socketId: c2.sid, name: 'Bruno', connectedAt: at[c2.sid] },
        { socketId: c3.sid, username: 'sin_nombre', connectedAt: at[c3.sid] },
      ];
      const operators = [
        { socketId: op1.sid, name: 'Olga', operatorId: 7, connectedAt: at[op1.sid] },
        { socketId: op2.sid, name: 'Pablo', operatorId: 'op-2', connectedAt: at[op2.sid] },
      ];
      assert.deepEqual(stats, {
        timestamp: stats.timestamp,
        summary: { totalConnections: 5, totalClients: 3, totalOperators: 2 },
        clients,
        operators,
      });

      // After disconnects: the rest unchanged, connectedAt included.
      c1.disconnect();
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c1.sid, reason: 'disconnect' });
      }
      op1.disconnect();
      health = await server.waitCounts({ clients: 2, operators: 1 });
      assert.deepEqual(health, { status: 'ok', timestamp: health.timestamp, connections: { total: 3, clients: 2, operators: 1 } });
      stats = await server.getJSON('/stats');
      assert.deepEqual(stats, {
        timestamp: stats.timestamp,
        summary: { totalConnections: 3, totalClients: 2, totalOperators: 1 },
        clients: clients.slice(1),
        operators: operators.slice(1),
      });

      await sc.leave(c2);
      assert.deepEqual(await expectEvent(op2, 'chatEnded'), { clientId: c2.sid, reason: 'disconnect' });
      await sc.leave(c3);
      assert.deepEqual(await expectEvent(op2, 'chatEnded'), { clientId: c3.sid, reason: 'disconnect' });
      await sc.leave(op2);
      health = await server.getJSON('/health');
      assert.deepEqual(health.connections, { total: 0, clients: 0, operators: 0 });
      stats = await server.getJSON('/stats');
      assert.deepEqual({ ...stats, timestamp: 0 }, {
        timestamp: 0,
        summary: { totalConnections: 0, totalClients: 0, totalOperators: 0 },
        clients: [],
        operators: [],
      });
      await expectNothing([u]);
    });

    // ------------------------------------------------------------ malformed

    scenario('malformed payloads: chatError {code, message, event} to the sender only; the sender keeps working', async (sc) => {
      const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
      const op2 = await sc.operator('op2', { name: 'Pablo', operatorId: 8 });
      const c1 = await sc.client('c1');
      const c2 = await sc.client('c2');
      await expectNewChats(op1, c1, c2);
      await expectNewChats(op2, c1, c2);

      // A missing required field may be called either.
      const MISSING = ['invalid_payload', 'invalid_type'];

      // From a client; each followed by a valid message that must arrive.
      const fromClient = [
        ['clientTyping', { isTyping: 'yes' }, 'invalid_type'],
        ['clientTyping', {}, MISSING],
        ['clientTyping', 'typing', 'invalid_payload'],
        ['clientMessage', { type: 'video', message: 'x' }, 'invalid_type'],
        ['clientMessage', { message: 'sin tipo' }, MISSING],
        ['clientMessage', { type: 'text', message: 42 }, 'invalid_type'],
        ['clientMessage', { type: 'text', message: 'x', name: ['a'] }, 'invalid_type'],
        ['clientMessage', 'hola', 'invalid_payload'],
        ['clientMessage', 42, 'invalid_payload'],
        ['clientMessage', null, 'invalid_payload'],
        ['clientMessage', ['text', 'hola'], 'invalid_payload'],
      ];
      for (const [i, [event, payload, code]] of fromClient.entries()) {
        const what = `c1 ${event} ${JSON.stringify(payload)}`;
        c1.emit(event, payload);
        await expectChatError(c1, event, code, what);
        const ts = `2026-01-01T00:00:00.${String(i).padStart(3, '0')}Z`;
        c1.emit('clientMessage', { type: 'text', message: `ok ${i}`, timestamp: ts });
        for (const op of [op1, op2]) {
          assert.deepEqual(await expectEvent(op, 'incomingMessage'),
            { from: c1.sid, type: 'text', message: `ok ${i}`, timestamp: ts }, `${op.label} after ${what}`);
        }
      }

      // From an operator; each followed by a valid message that must arrive.
      const fromOperator = [
        ['operatorMessage', { to: c1.sid, type: 'video', message: 'x', operatorId: 7, operatorName: 'Olga' }, 'invalid_type'],
        ['operatorMessage', { type: 'text', message: 'x', operatorId: 7, operatorName: 'Olga' }, MISSING],
        ['operatorMessage', { to: c1.sid, type: 'text', message: 'x', operatorId: true, operatorName: 'Olga' }, 'invalid_type'],
        ['operatorMessage', 'hola', 'invalid_payload'],
        ['operatorMessage', 7, 'invalid_payload'],
        ['operatorTyping', { to: c1.sid, isTyping: 1 }, 'invalid_type'],
        ['operatorTyping', { to: c1.sid, isTyping: 'true' }, 'invalid_type'],
        ['operatorTyping', null, 'invalid_payload'],
        ['endChat', 'c1', 'invalid_payload'],
      ];
      for (const [i, [event, payload, code]] of fromOperator.entries()) {
        const what = `op1 ${event} ${JSON.stringify(payload)}`;
        op1.emit(event, payload);
        await expectChatError(op1, event, code, what);
        op1.emit('operatorMessage', { to: c1.sid, type: 'text', message: `ok ${i}`, operatorId: 7, operatorName: 'Olga' });
        const got = await expectEvent(c1, 'operatorMessage');
        assertISO(got.timestamp);
        assert.deepEqual(got, { type: 'text', message: `ok ${i}`, operatorName: 'Olga', timestamp: got.timestamp }, `c1 after ${what}`);
        assert.deepEqual(await expectEvent(op2, 'operatorBroadcast'),
          { clientId: c1.sid, operatorId: 7, operatorName: 'Olga', type: 'text', message: `ok ${i}`, timestamp: got.timestamp });
      }
      op1.emit('operatorTyping', { to: c1.sid, isTyping: true });
      assert.deepEqual(await expectEvent(c1, 'operatorTyping'), { isTyping: true });
      c2.emit('clientTyping', { isTyping: 'no' });
      await expectChatError(c2, 'clientTyping', 'invalid_type');
      c2.emit('clientTyping', { isTyping: false });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'clientTyping'), { from: c2.sid, isTyping: false });
      }

      // A malformed join: refused, not joined; a valid join afterwards works.
      const u = await sc.connect('joiner');
      u.emit('join', { role: 'admin', name: 'Mallory' });
      await expectChatError(u, 'join', 'invalid_payload', 'join role admin');
      u.emit('join', 'client');
      await expectChatError(u, 'join', 'invalid_payload', 'join "client"');
      let stats = await server.getJSON('/stats');
      assert.equal(stats.summary.totalConnections, 4);
      u.emit('join', { role: 'client', name: 'joiner' });
      for (const op of [op1, op2]) await expectNewChats(op, u);
      stats = await server.getJSON('/stats');
      assert.deepEqual(stats.clients.map((c) => c.socketId), [c1.sid, c2.sid, u.sid]);

      await expectNothing([op1, op2, c1, c2, u]);
      for (const s of [op1, op2, c1, c2, u]) assert.ok(s.connected, `${s.label} still connected`);
    });

    // ------------------------------------------------------------ acks

    scenario('acks: accepted join, clientMessage and operatorMessage get {ok, id, timestamp}; refused ones {ok: false, error} and no chatError', async (sc) => {
      const ids = new Set();
      const ok = (reply, from, what) => {
        assertAckOk(reply, { from, to: Date.now(), what });
        assert.ok(!ids.has(reply.id), `${what}: id ${reply.id} used twice`);
        ids.add(reply.id);
        return reply;
      };

      // join, both roles.
      const op1 = await sc.connect('op1');
      let from = Date.now();
      ok(await emitAck(op1, 'join', { role: 'operator', name: 'Olga', operatorId: 7 }), from, 'op1 join');
      const op2 = await sc.operator('op2', { name: 'Pablo', operatorId: 8 });
      const c1 = await sc.connect('c1');
      from = Date.now();
      ok(await emitAck(c1, 'join', { role: 'client', name: 'c1' }), from, 'c1 join');
      await expectNewChats(op1, c1);
      await expectNewChats(op2, c1);
      const stats = await server.getJSON('/stats');
      assert.deepEqual(stats.operators.map((o) => o.socketId), [op1.sid, op2.sid]);
      assert.deepEqual(stats.clients.map((c) => c.socketId), [c1.sid]);

      // A refused join: the ack says why, and the socket is not joined.
      const u = await sc.connect('unjoined');
      assertAckRefused(await emitAck(u, 'join', { role: 'admin', name: 'Mallory' }), 'invalid_payload', 'join role admin');
      assertAckRefused(await emitAck(u, 'clientMessage', { type: 'text', message: 'x' }), 'not_joined', 'unjoined clientMessage');
      assertAckRefused(await emitAck(u, 'operatorMessage', { to: c1.sid, type: 'text', message: 'x' }), 'not_joined', 'unjoined operatorMessage');

      // clientMessage: the ack's timestamp is the one the operators got.
      from = Date.now();
      const a1 = ok(await emitAck(c1, 'clientMessage', { type: 'text', message: 'hola' }), from, 'clientMessage');
      const m1 = await expectEvent(op1, 'incomingMessage');
      assert.deepEqual(m1, { from: c1.sid, type: 'text', message: 'hola', timestamp: a1.timestamp });
      assert.deepEqual(await expectEvent(op2, 'incomingMessage'), m1);
      const a2 = await emitAck(c1, 'clientMessage', { type: 'text', message: 'con hora', timestamp: '2026-01-02T03:04:05.678Z' });
      assert.equal(a2.timestamp, '2026-01-02T03:04:05.678Z', 'the client\'s timestamp is the one forwarded and acked');
      ok({ ...a2 }, undefined, 'clientMessage with timestamp');
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'incomingMessage'),
          { from: c1.sid, type: 'text', message: 'con hora', timestamp: '2026-01-02T03:04:05.678Z' });
      }
      // Refused clientMessages.
      assertAckRefused(await emitAck(c1, 'clientMessage', { type: 'video', message: 'x' }), 'invalid_type', 'clientMessage type video');
      assertAckRefused(await emitAck(c1, 'clientMessage', { type: 'text', message: 'x'.repeat(5001) }), 'too_large', 'clientMessage 5001 chars');
      assertAckRefused(await emitAck(c1, 'clientMessage', 'hola'), 'invalid_payload', 'clientMessage "hola"');
      assertAckRefused(await emitAck(op1, 'clientMessage', { type: 'text', message: 'x' }), 'wrong_role', 'operator clientMessage');

      // operatorMessage: the ack's timestamp is the client's and the broadcast's.
      from = Date.now();
      const a3 = ok(await emitAck(op1, 'operatorMessage', { to: c1.sid, type: 'text', message: 'buenas', operatorId: 7, operatorName: 'Olga' }), from, 'operatorMessage');
      assert.deepEqual(await expectEvent(c1, 'operatorMessage'),
        { type: 'text', message: 'buenas', operatorName: 'Olga', timestamp: a3.timestamp });
      assert.deepEqual(await expectEvent(op2, 'operatorBroadcast'),
        { clientId: c1.sid, operatorId: 7, operatorName: 'Olga', type: 'text', message: 'buenas', timestamp: a3.timestamp });
      // Refused operatorMessages.
      const om = { type: 'text', message: 'x', operatorId: 7, operatorName: 'Olga' };
      assertAckRefused(await emitAck(op1, 'operatorMessage', { to: 'no-such-socket', ...om }), 'unknown_target', 'operatorMessage to an unknown id');
      assertAckRefused(await emitAck(op1, 'operatorMessage', { to: op2.sid, ...om }), 'unknown_target', 'operatorMessage to an operator');
      assertAckRefused(await emitAck(op1, 'operatorMessage', { to: c1.sid, ...om, type: 'image' }), 'invalid_payload', 'operatorMessage image without image');
      assertAckRefused(await emitAck(c1, 'operatorMessage', { to: c1.sid, ...om }), 'wrong_role', 'client operatorMessage');

      // The other events ack too.
      from = Date.now();
      ok(await emitAck(c1, 'clientTyping', { isTyping: true }), from, 'clientTyping');
      for (const op of [op1, op2]) assert.deepEqual(await expectEvent(op, 'clientTyping'), { from: c1.sid, isTyping: true });
      assertAckRefused(await emitAck(op1, 'endChat', {}), 'invalid_payload', 'operator endChat {}');
      from = Date.now();
      ok(await emitAck(op1, 'endChat', { clientId: c1.sid }), from, 'operator endChat');
      for (const op of [op1, op2]) assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c1.sid });
      assert.deepEqual(await expectEvent(c1, 'chatEnded'), { message: ENDED_BY_OPERATOR });

      // An event answered by its ack gets no chatError as well.
      await expectNothing([op1, op2, c1, u]);
      assert.deepEqual(u.rec.all, [], 'the unjoined socket received nothing but its acks');
    });

    // ------------------------------------------------------------ validation

    scenario('validation: bad images, a missing message and over-long text are refused to the sender alone; it keeps working', async (sc) => {
      const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
      const op2 = await sc.operator('op2', { name: 'Pablo', operatorId: 8 });
      const c1 = await sc.client('c1');
      await expectNewChats(op1, c1);
      await expectNewChats(op2, c1);

      const SVG = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>');
      const refused = [
        ['a type that is not allowed (data URL)', { type: 'image', image: dataURL('image/svg+xml', SVG), mimeType: 'image/svg+xml' }, 'invalid_type'],
        ['a type that is not allowed (bare base64)', { type: 'image', image: b64(PNG_BYTES), mimeType: 'application/pdf' }, 'invalid_type'],
        ['bare base64 without mimeType', { type: 'image', image: b64(PNG_BYTES) }, ['invalid_type', 'invalid_payload']],
        ['JPEG bytes declared PNG', { type: 'image', image: dataURL('image/png', JPEG_BYTES), mimeType: 'image/png' }, 'invalid_type'],
        ['bytes without a JPEG header declared JPEG', { type: 'image', image: dataURL('image/jpeg', Buffer.alloc(64, 7)) }, 'invalid_type'],
        ['PNG bytes declared GIF (bare base64)', { type: 'image', image: b64(PNG_BYTES), mimeType: 'image/gif' }, 'invalid_type'],
        ['text declared WEBP', { type: 'image', image: dataURL('image/webp', Buffer.from('RIFF but not an image at all')) }, 'invalid_type'],
        ['bad base64 (data URL)', { type: 'image', image: 'data:image/png;base64,iVBORw0KGgo***', mimeType: 'image/png' }, 'invalid_payload'],
        ['bad base64 (bare)', { type: 'image', image: 'not base64 at all!', mimeType: 'image/png' }, 'invalid_payload'],
        ['a data URL that is not base64', { type: 'image', image: 'data:image/png,%89PNG' }, 'invalid_payload'],
        ['an image message without image', { type: 'image', message: 'sin imagen', mimeType: 'image/png' }, 'invalid_payload'],
        ['a text message without message', { type: 'text' }, 'invalid_payload'],
        ['text over 5000 characters', { type: 'text', message: 'x'.repeat(5001) }, 'too_large'],
      ];
      let n = 0;
      const valid = async (what) => {
        const ts = `2026-01-01T00:00:00.${String(n).padStart(3, '0')}Z`;
        const message = `ok ${n++}`;
        c1.emit('clientMessage', { type: 'text', message, timestamp: ts });
        for (const op of [op1, op2]) {
          assert.deepEqual(await expectEvent(op, 'incomingMessage'), { from: c1.sid, type: 'text', message, timestamp: ts },
            `${op.label}: the first message after ${what}`);
        }
      };
      for (const [what, payload, code] of refused) {
        c1.emit('clientMessage', payload);
        await expectChatError(c1, 'clientMessage', code, what);
        await valid(what);
      }

      // Every allowed type passes, as a data URL or bare with mimeType; text
      // up to 5000 characters (not bytes) passes.
      const accepted = [
        { type: 'image', image: dataURL('image/png', PNG_BYTES), name: 'a.png', mimeType: 'image/png', size: PNG_BYTES.length },
        { type: 'image', image: b64(JPEG_BYTES), mimeType: 'image/jpeg' },
        { type: 'image', image: dataURL('image/gif', GIF_BYTES) },
        { type: 'image', image: b64(WEBP_BYTES), mimeType: 'image/webp', message: 'webp' },
        { type: 'text', message: 'x'.repeat(5000) },
        { type: 'text', message: 'ñ'.repeat(5000) },
      ];
      for (const [i, payload] of accepted.entries()) {
        const msg = { ...payload, timestamp: `2026-02-01T00:00:00.${String(i).padStart(3, '0')}Z` };
        c1.emit('clientMessage', msg);
        for (const op of [op1, op2]) {
          assert.deepEqual(await expectEvent(op, 'incomingMessage'), { from: c1.sid, ...msg }, `accepted #${i}`);
        }
      }

      // An operator's image is checked the same way; the client and the
      // other operator get nothing of it.
      const om = { to: c1.sid, operatorId: 7, operatorName: 'Olga' };
      for (const [what, payload, code] of [
        ['JPEG bytes declared PNG', { type: 'image', image: dataURL('image/png', JPEG_BYTES) }, 'invalid_type'],
        ['a type that is not allowed', { type: 'image', image: b64(PNG_BYTES), mimeType: 'image/bmp' }, 'invalid_type'],
        ['text over 5000 characters', { type: 'text', message: 'y'.repeat(5001) }, 'too_large'],
      ]) {
        op1.emit('operatorMessage', { ...om, ...payload });
        await expectChatError(op1, 'operatorMessage', code, `operator ${what}`);
        op1.emit('operatorMessage', { ...om, type: 'text', message: `after ${what}` });
        const got = await expectEvent(c1, 'operatorMessage');
        assert.deepEqual(got, { type: 'text', message: `after ${what}`, operatorName: 'Olga', timestamp: got.timestamp });
        assert.deepEqual(await expectEvent(op2, 'operatorBroadcast'),
          { clientId: c1.sid, operatorId: 7, operatorName: 'Olga', type: 'text', message: `after ${what}`, timestamp: got.timestamp });
      }
      op1.emit('operatorMessage', { ...om, type: 'image', image: dataURL('image/jpeg', JPEG_BYTES), mimeType: 'image/jpeg' });
      const img = await expectEvent(c1, 'operatorMessage');
      assert.deepEqual(img, { type: 'image', image: dataURL('image/jpeg', JPEG_BYTES), mimeType: 'image/jpeg', operatorName: 'Olga', timestamp: img.timestamp });
      assert.deepEqual(await expectEvent(op2, 'operatorBroadcast'),
        { clientId: c1.sid, operatorId: 7, operatorName: 'Olga', type: 'image', image: dataURL('image/jpeg', JPEG_BYTES), mimeType: 'image/jpeg', timestamp: img.timestamp });

      await expectNothing([op1, op2, c1]);
      for (const s of [op1, op2, c1]) assert.ok(s.connected, `${s.label} still connected`);
    });

    // ------------------------------------------------------------ order, upgrade

    if (mode !== 'upgrade') {
      scenario('order: each sender\'s messages arrive in the order sent', async (sc) => {
        const op1 = await sc.operator('op1', { name: 'Olga', operatorId: 7 });
        const c1 = await sc.client('c1');
        await expectNewChats(op1, c1);
        const n = 30;
        for (let i = 0; i < n; i++) {
          c1.emit('clientMessage', { type: 'text', message: `c${i}`, timestamp: '2026-01-01T00:00:00.000Z' });
          op1.emit('operatorMessage', { to: c1.sid, type: 'text', message: `o${i}`, operatorId: 7, operatorName: 'Olga' });
        }
        for (let i = 0; i < n; i++) {
          assert.equal((await expectEvent(op1, 'incomingMessage')).message, `c${i}`);
          assert.equal((await expectEvent(c1, 'operatorMessage')).message, `o${i}`);
        }
        await expectNothing([op1, c1]);
      });
    } else {
      test('upgrade: polling until the upgrade, websocket after; messages before, during and after arrive in order', async () => {
        const gate = await startUpgradeGate(server);
        const sc = new Scenario(server, transports);
        try {
          const op = await sc.connect('op', { url: gate.url });
          const cl = await sc.connect('client', { url: gate.url });
          for (const s of [op, cl]) {
            assert.equal(s.transportAtConnect, 'polling');
            assert.equal(s.io.engine.transport.name, 'polling');
          }
          op.emit('join', { role: 'operator', name: 'Olga', operatorId: 7 });
          await server.waitJoined(op.sid, 'operator');
          cl.emit('join', { role: 'client', name: 'client' });
          assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: cl.sid, username: 'client' });

          let seq = 0;
          const sent = [];
          const send = () => {
            const i = seq++;
            sent.push({ i, client: cl.io.engine.transport.name, op: op.io.engine.transport.name });
            cl.emit('clientMessage', { type: 'text', message: `c${i}`, timestamp: '2026-01-01T00:00:00.000Z' });
            op.emit('operatorMessage', { to: cl.sid, type: 'text', message: `o${i}`, operatorId: 7, operatorName: 'Olga' });
          };
          const receive = async (upTo) => {
            while (received < upTo) {
              const i = received++;
              assert.deepEqual(await expectEvent(op, 'incomingMessage'),
                { from: cl.sid, type: 'text', message: `c${i}`, timestamp: '2026-01-01T00:00:00.000Z' });
              const om = await expectEvent(cl, 'operatorMessage');
              assert.deepEqual(om, { type: 'text', message: `o${i}`, operatorName: 'Olga', timestamp: om.timestamp });
            }
          };
          let received = 0;

          // Before: on polling, both ways.
          for (let i = 0; i < 10; i++) send();
          await receive(10);
          assert.ok(sent.every((s) => s.client === 'polling' && s.op === 'polling'), 'sent on polling');
          const viaPolling = [...op.rec.all, ...cl.rec.all].filter((r) => r.event !== 'newChat');
          assert.ok(viaPolling.length === 20 && viaPolling.every((r) => r.transport === 'polling'), 'received on polling');
          assert.ok(gate.held >= 2, `websocket probes held (${gate.held})`);

          // During: sent while the upgrade is under way.
          gate.release();
          for (let i = 0; i < 10; i++) send();
          const names = await Promise.all([op.upgraded, cl.upgraded]);
          assert.deepEqual(names, ['websocket', 'websocket']);
          assert.equal(op.io.engine.transport.name, 'websocket');
          assert.equal(cl.io.engine.transport.name, 'websocket');

          // After: on websocket.
          for (let i = 0; i < 10; i++) send();
          await receive(30);
          assert.ok(sent.slice(20).every((s) => s.client === 'websocket' && s.op === 'websocket'), 'sent on websocket');
          const last = [...op.rec.all, ...cl.rec.all].filter((r) => /c29|o29/.test(JSON.stringify(r.args)));
          assert.equal(last.length, 2);
          assert.ok(last.every((r) => r.transport === 'websocket'), 'received on websocket');

          await expectNothing([op, cl]);
          await sc.verify();
        } finally {
          await sc.close();
          await gate.close();
        }
      });
    }
  });
}

// ---------------------------------------------------------------- HTTP, CORS, process

describe('HTTP, CORS, mixed and legacy clients, the process', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test('GET / answers JSON naming the service', async () => {
    const body = await server.getJSON('/');
    assert.equal(typeof body, 'object');
    assert.equal(body.service, 'switchboard');
  });

  test('CORS (default "*"): handshake, preflight and HTTP endpoints echo any origin (never "*") with credentials', async () => {
    const origin = 'http://crm.example.com';
    const hs = await server.http('/chat/?EIO=4&transport=polling', { headers: { Origin: origin } });
    assert.equal(hs.status, 200);
    assert.equal(hs.headers.get('access-control-allow-origin'), origin, 'handshake allow-origin');
    assert.equal(hs.headers.get('access-control-allow-credentials'), 'true');
    assert.match(hs.headers.get('vary') ?? '', /\bOrigin\b/i, 'handshake vary');
    assert.match(hs.text, /^0\{/);

    const pre = await server.http('/chat/?EIO=4&transport=polling', {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST' },
    });
    assert.ok(pre.status === 204 || pre.status === 200, `preflight status ${pre.status}`);
    assert.equal(pre.headers.get('access-control-allow-origin'), origin, 'preflight allow-origin');
    assert.equal(pre.headers.get('access-control-allow-credentials'), 'true');
    const methods = (pre.headers.get('access-control-allow-methods') ?? '').split(/\s*,\s*/);
    assert.ok(methods.includes('GET') && methods.includes('POST'), `allow-methods ${methods}`);

    for (const p of ['/health', '/stats']) {
      const res = await server.http(p, { headers: { Origin: origin } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), origin, `${p} allow-origin`);
      assert.equal(res.headers.get('access-control-allow-credentials'), 'true', `${p} allow-credentials`);
      // Without an Origin (not a browser) it answers, with no CORS headers.
      const bare = await server.http(p);
      assert.equal(bare.status, 200);
      assert.equal(bare.headers.get('access-control-allow-origin'), null, `${p} without Origin: allow-origin`);
    }
  });

  test('NODE_ENV=production needs an explicit CORS_ORIGIN list and operator auth (or SWITCHBOARD_INSECURE_OPERATORS)', async () => {
    const crm = 'https://crm.example.com';
    const secret = 'an HS256 secret of at least 32 characters';
    await assert.rejects(startServer({ env: { NODE_ENV: 'production', SWITCHBOARD_JWT_SECRET: secret } }),
      /exited before listening[\s\S]*CORS_ORIGIN/, 'production with CORS_ORIGIN "*"');
    await assert.rejects(startServer({ env: { NODE_ENV: 'production', CORS_ORIGIN: crm } }),
      /exited before listening[\s\S]*operator authentication/, 'production without operator auth');
    const withAuth = await startServer({ env: { NODE_ENV: 'production', CORS_ORIGIN: crm, SWITCHBOARD_JWT_SECRET: secret } });
    try {
      assert.match(withAuth.stdout, /operators\s+authenticated/);
      assert.equal((await withAuth.http('/health')).status, 200);
    } finally {
      await withAuth.stop();
    }
  });

  // The banner is the readiness signal: signal handling must already be in
  // place when it is printed (it once was not, and 4 runs in 10 died).
  test('SIGTERM right after the "listening" banner still shuts down gracefully', async () => {
    for (let i = 0; i < 5; i++) {
      const s = await startServer();
      await s.stop();
    }
  });

  test('CORS_ORIGIN and NODE_ENV=production: the configured origin only (403 for another), and chat works', async () => {
    const crm = 'https://crm.example.com';
    const widget = 'https://www.example.com';
    const other = await startServer({ env: { CORS_ORIGIN: `${crm}, ${widget}`, NODE_ENV: 'production', SWITCHBOARD_INSECURE_OPERATORS: 'true' } });
    const sc = new Scenario(other, MODES.websocket);
    try {
      assert.match(other.stdout, /production/);
      for (const origin of [crm, widget]) {
        const ok = await other.http('/chat/?EIO=4&transport=polling', { headers: { Origin: origin } });
        assert.equal(ok.status, 200, `handshake from ${origin}`);
        assert.match(ok.text, /^0\{/);
        assert.equal(ok.headers.get('access-control-allow-origin'), origin);
        assert.equal(ok.headers.get('access-control-allow-credentials'), 'true');
        const health = await other.http('/health', { headers: { Origin: origin } });
        assert.equal(health.status, 200);
        assert.equal(health.headers.get('access-control-allow-origin'), origin);
      }
      const evil = 'https://evil.example.com';
      for (const p of ['/chat/?EIO=4&transport=polling', '/health']) {
        const bad = await other.http(p, { headers: { Origin: evil } });
        assert.equal(bad.status, 403, `${p} from ${evil}: ${bad.status} ${bad.text}`);
        const allowed = bad.headers.get('access-control-allow-origin');
        assert.ok(allowed !== '*' && allowed !== evil, `${p}: foreign origin allowed: ${allowed}`);
        assert.doesNotMatch(bad.text, /^0\{/, `${p}: no Engine.IO handshake for ${evil}`);
      }
      // Without an Origin (not a browser: a load balancer's health check) it answers.
      assert.equal((await other.http('/health')).status, 200);

      const op = await sc.operator('op', { name: 'Olga', operatorId: 7 });
      const cl = await sc.client('cl');
      await expectNewChats(op, cl);
      cl.emit('clientMessage', { type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      assert.deepEqual(await expectEvent(op, 'incomingMessage'),
        { from: cl.sid, type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      await sc.verify();
    } finally {
      await sc.close();
      await other.stop();
    }
  });

  test('mixed transports: a polling client, a websocket operator and an upgrading operator talk both ways', async () => {
    const sc = new Scenario(server, MODES.websocket);
    try {
      const ws = await connect('op ws', MODES.websocket, { url: server.url });
      const up = await connect('op upgrade', MODES.upgrade, { url: server.url });
      const cl = await connect('client polling', MODES.polling, { url: server.url });
      sc.sockets.push(ws, up, cl);
      ws.emit('join', { role: 'operator', name: 'Olga', operatorId: 7 });
      up.emit('join', { role: 'operator', name: 'Pablo', operatorId: 8 });
      await server.waitJoined(ws.sid, 'operator');
      await server.waitJoined(up.sid, 'operator');
      cl.emit('join', { role: 'client', name: 'Ana', phone: '600' });
      for (const op of [ws, up]) {
        assert.deepEqual(await expectEvent(op, 'newChat'), { clientId: cl.sid, username: 'Ana', phone: '600' });
      }
      cl.emit('clientMessage', { type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      for (const op of [ws, up]) {
        assert.deepEqual(await expectEvent(op, 'incomingMessage'),
          { from: cl.sid, type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      }
      ws.emit('operatorMessage', { to: cl.sid, type: 'text', message: 'buenas', operatorId: 7, operatorName: 'Olga' });
      const om = await expectEvent(cl, 'operatorMessage');
      assertISO(om.timestamp);
      assert.deepEqual(om, { type: 'text', message: 'buenas', operatorName: 'Olga', timestamp: om.timestamp });
      assert.deepEqual(await expectEvent(up, 'operatorBroadcast'),
        { clientId: cl.sid, operatorId: 7, operatorName: 'Olga', type: 'text', message: 'buenas', timestamp: om.timestamp });
      await expectNothing([ws, up, cl]);
      assert.equal(await up.upgraded, 'websocket');
      assert.equal(cl.io.engine.transport.name, 'polling');
      assert.equal(ws.io.engine.transport.name, 'websocket');
    } finally {
      await sc.close();
    }
  });

  test('legacy Engine.IO 3 client (socket.io-client 2.x framing) on polling joins and chats', async () => {
    const sc = new Scenario(server, MODES.websocket);
    let legacy;
    try {
      const op = await sc.operator('op', { name: 'Olga', operatorId: 7 });
      legacy = await eio3Connect(server.url);
      assert.equal(await legacy.next(), '40', 'connected to the main namespace');
      await legacy.emit('join', { role: 'client', name: 'Viejo', username: 'viejo_ñ' });
      const nc = await expectEvent(op, 'newChat');
      assert.deepEqual(nc, { clientId: nc.clientId, username: 'viejo_ñ' });
      assert.equal(typeof nc.clientId, 'string');
      await legacy.emit('clientMessage', { type: 'text', message: 'año 👋', timestamp: '2026-01-01T00:00:00.000Z' });
      assert.deepEqual(await expectEvent(op, 'incomingMessage'),
        { from: nc.clientId, type: 'text', message: 'año 👋', timestamp: '2026-01-01T00:00:00.000Z' });
      op.emit('operatorMessage', { to: nc.clientId, type: 'text', message: 'qué tal 👋', operatorId: 7, operatorName: 'Olga' });
      const om = await legacy.event('operatorMessage');
      assertISO(om.timestamp);
      assert.deepEqual(om, { type: 'text', message: 'qué tal 👋', operatorName: 'Olga', timestamp: om.timestamp });
      op.emit('endChat', { clientId: nc.clientId });
      assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: nc.clientId });
      assert.deepEqual(await legacy.event('chatEnded'), { message: ENDED_BY_OPERATOR });
      await legacy.close();
      legacy = undefined;
      assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: nc.clientId, reason: 'disconnect' });
      await expectNothing([op]);
      await sc.verify();
    } finally {
      await legacy?.close().catch(() => {});
      await sc.close();
    }
  });

  test('SIGTERM with joined sockets on every transport: the process exits 0 and the sockets are closed', async () => {
    const other = await startServer();
    const sockets = [];
    for (const [mode, transports] of Object.entries(MODES)) {
      for (const role of ['client', 'operator']) {
        const s = await connect(`${role} ${mode}`, transports, { url: other.url });
        sockets.push(s);
        s.emit('join', { role, name: s.label, operatorId: 1 });
        await other.waitJoined(s.sid, role);
      }
    }
    const closed = sockets.map((s) => new Promise((resolve) => s.once('disconnect', resolve)));
    const t0 = Date.now();
    await other.stop();
    assert.ok(Date.now() - t0 < 5000, `shutdown took ${Date.now() - t0} ms`);
    const reasons = await Promise.all(closed);
    for (const r of reasons) assert.ok(typeof r === 'string');
    for (const s of sockets) s.close();
  });
});

// ---------------------------------------------------------------- limits, auth

describe('rate limits and operator auth', () => {
  test('rate limits at their defaults: of a burst of 30 clientMessages 20 are delivered and 10 answered rate_limited; typing likewise; the socket stays', async () => {
    const server = await startServer(); // the default limits
    const sc = new Scenario(server, MODES.websocket);
    try {
      const op = await sc.operator('op', { name: 'Olga', operatorId: 7 });
      const c1 = await sc.client('c1');
      await expectNewChats(op, c1);
      // The join took one of c1's 20 message tokens; at 10/s the bucket is
      // full again 100 ms later.
      await delay(150);

      const ts = '2026-01-01T00:00:00.000Z';
      for (let i = 0; i < 30; i++) c1.emit('clientMessage', { type: 'text', message: `m${i}`, timestamp: ts });
      const over = emitAck(c1, 'clientMessage', { type: 'text', message: 'm30', timestamp: ts });
      for (let i = 0; i < 15; i++) c1.emit('clientTyping', { isTyping: i % 2 === 0 });

      for (let i = 0; i < 20; i++) {
        assert.deepEqual(await expectEvent(op, 'incomingMessage'), { from: c1.sid, type: 'text', message: `m${i}`, timestamp: ts });
      }
      for (let i = 0; i < 10; i++) {
        assert.deepEqual(await expectEvent(op, 'clientTyping'), { from: c1.sid, isTyping: i % 2 === 0 });
      }
      for (let i = 0; i < 10; i++) await expectChatError(c1, 'clientMessage', 'rate_limited', `clientMessage #${20 + i}`);
      assertAckRefused(await over, 'rate_limited', 'the 31st clientMessage, with an ack');
      for (let i = 0; i < 5; i++) await expectChatError(c1, 'clientTyping', 'rate_limited', `clientTyping #${10 + i}`);
      await expectNothing([op, c1]);
      assert.ok(c1.connected, 'c1 still connected');

      // Tokens come back at the sustained rate.
      await delay(150);
      const from = Date.now();
      const ack = await emitAck(c1, 'clientMessage', { type: 'text', message: 'otra vez' });
      assertAckOk(ack, { from, to: Date.now(), what: 'clientMessage after the burst' });
      assert.deepEqual(await expectEvent(op, 'incomingMessage'), { from: c1.sid, type: 'text', message: 'otra vez', timestamp: ack.timestamp });
      await expectNothing([op, c1]);
      await sc.verify();
    } finally {
      await sc.close();
      await server.stop();
    }
  });

  test('operator auth (SWITCHBOARD_JWT_SECRET): a valid HS256 token names the operator; expired, forged, premature or no token is unauthorized and hears nothing', async () => {
    const secret = 'switchboard e2e operator secret, 32+ chars';
    const server = await startServer({ env: { SWITCHBOARD_JWT_SECRET: secret, ...HIGH_LIMITS } });
    const sc = new Scenario(server, MODES.websocket);
    const now = Math.floor(Date.now() / 1000);
    try {
      // A token in auth: {token}; its sub and name win over the join's.
      const op1 = await sc.connect('op1', { auth: { token: signHS256({ sub: 'op-42', name: 'Olga Token', iat: now, exp: now + 600 }, secret) } });
      let from = Date.now();
      assertAckOk(await emitAck(op1, 'join', { role: 'operator', name: 'Impostor', operatorId: 999 }), { from, to: Date.now(), what: 'op1 join' });
      // A token as Authorization: Bearer; its operatorId claim.
      const op2 = await sc.connect('op2', { extraHeaders: { Authorization: `Bearer ${signHS256({ operatorId: 8, name: 'Pablo Token', exp: now + 600 }, secret)}` } });
      op2.emit('join', { role: 'operator', name: 'Pablo', operatorId: 'x' });
      await server.waitJoined(op2.sid, 'operator');
      const stats = await server.getJSON('/stats');
      assert.deepEqual(stats.operators.map(({ connectedAt, ...o }) => o), [
        { socketId: op1.sid, name: 'Olga Token', operatorId: 'op-42' },
        { socketId: op2.sid, name: 'Pablo Token', operatorId: 8 },
      ]);

      // Refused: an expired token, one signed with another secret, one not
      // yet valid, none at all.
      const refused = [
        ['expired', { auth: { token: signHS256({ sub: 'op-1', name: 'Old', iat: now - 7200, exp: now - 3600 }, secret) } }],
        ['forged', { auth: { token: signHS256({ sub: 'op-1', name: 'Forged', exp: now + 600 }, 'another secret, also of 32+ characters') } }],
        ['premature', { auth: { token: signHS256({ sub: 'op-1', name: 'Early', nbf: now + 3600, exp: now + 7200 }, secret) } }],
        ['no token', {}],
      ];
      const outsiders = [];
      for (const [i, [label, opts]] of refused.entries()) {
        const s = await sc.connect(label, opts);
        outsiders.push(s);
        const join = { role: 'operator', name: label, operatorId: 100 + i };
        if (i % 2 === 0) {
          s.emit('join', join);
          await expectChatError(s, 'join', 'unauthorized', `${label}: join`);
        } else {
          assertAckRefused(await emitAck(s, 'join', join), 'unauthorized', `${label}: join`);
        }
      }
      assert.deepEqual((await server.getJSON('/health')).connections, { total: 2, clients: 0, operators: 2 });

      // A conversation: only the two verified operators hear of it.
      const c1 = await sc.client('c1');
      await expectNewChats(op1, c1);
      await expectNewChats(op2, c1);
      c1.emit('clientMessage', { type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      for (const op of [op1, op2]) {
        assert.deepEqual(await expectEvent(op, 'incomingMessage'), { from: c1.sid, type: 'text', message: 'hola', timestamp: '2026-01-01T00:00:00.000Z' });
      }
      c1.emit('clientTyping', { isTyping: true });
      for (const op of [op1, op2]) assert.deepEqual(await expectEvent(op, 'clientTyping'), { from: c1.sid, isTyping: true });

      // The token's operatorId and name win over the message's.
      from = Date.now();
      op1.emit('operatorMessage', { to: c1.sid, type: 'text', message: 'buenas', operatorId: 1, operatorName: 'Fake' });
      const m1 = await expectEvent(c1, 'operatorMessage');
      assertISO(m1.timestamp, { from, to: Date.now() });
      assert.deepEqual(m1, { type: 'text', message: 'buenas', operatorName: 'Olga Token', timestamp: m1.timestamp });
      assert.deepEqual(await expectEvent(op2, 'operatorBroadcast'),
        { clientId: c1.sid, operatorId: 'op-42', operatorName: 'Olga Token', type: 'text', message: 'buenas', timestamp: m1.timestamp });
      op2.emit('operatorMessage', { to: c1.sid, type: 'text', message: 'sin nombre' });
      const m2 = await expectEvent(c1, 'operatorMessage');
      assert.deepEqual(m2, { type: 'text', message: 'sin nombre', operatorName: 'Pablo Token', timestamp: m2.timestamp });
      assert.deepEqual(await expectEvent(op1, 'operatorBroadcast'),
        { clientId: c1.sid, operatorId: 8, operatorName: 'Pablo Token', type: 'text', message: 'sin nombre', timestamp: m2.timestamp });

      // The refused sockets cannot act as operators either.
      for (const s of outsiders) {
        s.emit('operatorMessage', { to: c1.sid, type: 'text', message: 'x', operatorId: 1, operatorName: 'X' });
        await expectChatError(s, 'operatorMessage', 'not_joined', `${s.label}: operatorMessage`);
      }
      c1.emit('endChat', {});
      for (const op of [op1, op2]) assert.deepEqual(await expectEvent(op, 'chatEnded'), { clientId: c1.sid });

      await expectNothing([op1, op2, c1, ...outsiders]);
      for (const s of outsiders) {
        assert.ok(s.rec.all.every((r) => r.event === 'chatError'), `${s.label} heard of the conversation: ${s.rec.describe(s.rec.all)}`);
        assert.ok(s.connected, `${s.label} still connected`);
      }
      await sc.verify();
    } finally {
      await sc.close();
      await server.stop();
    }
  });
});
