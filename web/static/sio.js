// A small Socket.IO client for Switchboard's own pages: Socket.IO 5 over
// Engine.IO 4, websocket transport only, main namespace, JSON events and
// acknowledgements, heartbeats, reconnection with connection-state recovery
// (pid and last offset). What socket.io-client does beyond that (polling,
// binary attachments, other namespaces) the pages do not need.
'use strict';

(function (global) {
  const EIO_OPEN = '0', EIO_CLOSE = '1', EIO_PING = '2', EIO_PONG = '3', EIO_MESSAGE = '4';
  const SIO_CONNECT = '0', SIO_DISCONNECT = '1', SIO_EVENT = '2', SIO_ACK = '3', SIO_CONNECT_ERROR = '4';

  /**
   * Connects to path on this page's host. opts: auth (an object, or a
   * function returning one, sent with every CONNECT), reconnect (default
   * true), delay and maxDelay (ms, default 1000 and 5000).
   */
  class Socket {
    constructor(path, opts = {}) {
      this.path = path.replace(/\/$/, '') + '/';
      this.opts = Object.assign({ reconnect: true, delay: 1000, maxDelay: 5000 }, opts);
      this.id = null;
      this.connected = false;
      this.recovered = false;
      this.pid = null;
      this.offset = null;
      this.listeners = new Map();
      this.acks = new Map();
      this.nextAck = 0;
      this.buffer = [];
      this.attempts = 0;
      this.closedByUser = false;
      this.ws = null;
      this.heartbeat = null;
      this.open();
    }

    on(event, fn) {
      if (!this.listeners.has(event)) this.listeners.set(event, []);
      this.listeners.get(event).push(fn);
      return this;
    }

    fire(event, ...args) {
      for (const fn of this.listeners.get(event) || []) {
        try {
          fn(...args);
        } catch (err) {
          console.error(`listener of ${event}:`, err);
        }
      }
    }

    /** Sends an event; a function as last argument receives its acknowledgement. */
    emit(event, ...args) {
      let packet = SIO_EVENT;
      if (typeof args[args.length - 1] === 'function') {
        const id = this.nextAck++;
        this.acks.set(id, args.pop());
        packet += id;
      }
      packet += JSON.stringify([event, ...args]);
      if (this.connected) {
        this.send(EIO_MESSAGE + packet);
      } else {
        // Sent once connected again, as socket.io-client does.
        this.buffer.push(packet);
      }
      return this;
    }

    /** Closes for good: a Socket.IO DISCONNECT, then the websocket. */
    disconnect() {
      this.closedByUser = true;
      clearTimeout(this.retry);
      if (this.connected) this.send(EIO_MESSAGE + SIO_DISCONNECT);
      this.teardown('io client disconnect');
    }

    /** Drops the transport without a goodbye, as a network blip does (tests and demos). */
    drop() {
      if (this.ws) this.ws.close();
    }

    open() {
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const ws = new WebSocket(`${scheme}//${location.host}${this.path}?EIO=4&transport=websocket`);
      this.ws = ws;
      ws.onmessage = (e) => this.receive(String(e.data));
      ws.onclose = () => {
        if (this.ws === ws) this.teardown('transport close');
      };
      ws.onerror = () => {};
    }

    send(text) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    }

    receive(data) {
      switch (data[0]) {
        case EIO_OPEN: {
          const hs = JSON.parse(data.slice(1));
          this.pingWindow = hs.pingInterval + hs.pingTimeout;
          this.watch();
          let auth = typeof this.opts.auth === 'function' ? this.opts.auth() : this.opts.auth;
          auth = Object.assign({}, auth || {});
          if (this.pid) {
            auth.pid = this.pid;
            if (this.offset !== null) auth.offset = this.offset;
          }
          this.send(EIO_MESSAGE + SIO_CONNECT + JSON.stringify(auth));
          return;
        }
        case EIO_PING:
          this.watch();
          this.send(EIO_PONG);
          return;
        case EIO_CLOSE:
          this.teardown('transport close');
          return;
        case EIO_MESSAGE:
          this.packet(data.slice(1));
      }
    }

    // watch restarts the heartbeat deadline: a server that sends no ping
    // within an interval and a timeout is gone.
    watch() {
      clearTimeout(this.heartbeat);
      this.heartbeat = setTimeout(() => {
        if (this.ws) this.ws.close();
      }, this.pingWindow + 1000);
    }

    packet(p) {
      const type = p[0];
      let rest = p.slice(1);
      let ackId = null;
      const m = /^\d+/.exec(rest);
      if (m && (type === SIO_EVENT || type === SIO_ACK)) {
        ackId = Number(m[0]);
        rest = rest.slice(m[0].length);
      }
      switch (type) {
        case SIO_CONNECT: {
          const d = JSON.parse(rest || '{}');
          const previous = this.id;
          this.recovered = Boolean(this.pid) && previous === d.sid;
          if (!this.recovered) this.offset = null;
          this.id = d.sid;
          this.pid = d.pid || null;
          this.connected = true;
          this.attempts = 0;
          const queued = this.buffer;
          this.buffer = [];
          for (const q of queued) this.send(EIO_MESSAGE + q);
          this.fire('connect', { recovered: this.recovered, reconnect: previous !== null });
          return;
        }
        case SIO_CONNECT_ERROR: {
          let d = {};
          try {
            d = JSON.parse(rest);
          } catch {}
          this.fire('connect_error', d);
          return;
        }
        case SIO_DISCONNECT:
          // The server's own disconnect is final, as socket.io-client's.
          this.closedByUser = true;
          this.teardown('io server disconnect');
          return;
        case SIO_EVENT: {
          const args = JSON.parse(rest);
          const event = args.shift();
          // With recovery on, every event but volatile ones ends with its offset.
          if (this.pid && args.length > 1 && typeof args[args.length - 1] === 'string') {
            this.offset = args.pop();
          }
          if (ackId !== null) args.push((...reply) => this.send(EIO_MESSAGE + SIO_ACK + ackId + JSON.stringify(reply)));
          this.fire(event, ...args);
          return;
        }
        case SIO_ACK: {
          const fn = this.acks.get(ackId);
          this.acks.delete(ackId);
          if (fn) fn(...JSON.parse(rest));
        }
      }
    }

    teardown(reason) {
      clearTimeout(this.heartbeat);
      const ws = this.ws;
      this.ws = null;
      if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
      const was = this.connected;
      this.connected = false;
      if (was) this.fire('disconnect', reason);
      if (this.closedByUser || !this.opts.reconnect) return;
      const base = Math.min(this.opts.delay * 2 ** this.attempts, this.opts.maxDelay);
      this.attempts++;
      const wait = base * (0.5 + Math.random());
      this.fire('reconnecting', { attempt: this.attempts, wait });
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.open(), wait);
    }
  }

  global.SIO = { Socket, connect: (path, opts) => new Socket(path, opts) };
})(window);
