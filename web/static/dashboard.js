// The live dashboard: reads /dashboard/data once a second, turns the
// server's cumulative counters into rates over the last second, and draws
// the last five minutes on canvases.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const STORE = 'switchboard.dashboard.token';
  const HISTORY = 300; // seconds kept for the charts
  const needsToken = document.body.dataset.operatorAuth === 'true';
  const MESSAGES = ['clientMessage', 'operatorMessage'];

  let token = sessionStorage.getItem(STORE) || '';
  let prev = null;
  const history = [];
  let timer = null;

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    sessionStorage.setItem(STORE, token);
    $('token-error').textContent = '';
    tick();
  });

  function status(text, kind = '') {
    const s = $('status');
    s.textContent = text;
    s.className = `status ${kind}`;
  }

  // tick reads the figures once; the next read is set when this one is
  // done, so reads never overlap. A read that a newer one replaced (a
  // token given meanwhile) is dropped whatever it brings: a late refusal
  // of an old token must not hide what the new one shows, nor the other
  // way round.
  let reads = 0;
  async function tick() {
    clearTimeout(timer);
    const read = ++reads;
    const current = () => read === reads;
    const again = () => {
      if (current()) timer = setTimeout(tick, 1000);
    };
    if (needsToken && !token) {
      refused('An operator token is required.');
      return;
    }
    let res;
    try {
      res = await fetch('/dashboard/data', { headers: token ? { Authorization: `Bearer ${token}` } : {}, cache: 'no-store' });
    } catch {
      if (current()) status('server unreachable', 'bad');
      again();
      return;
    }
    if (res.status === 401 || res.status === 403) {
      let why = 'refused';
      try {
        why = (await res.json()).message || why;
      } catch {}
      if (current()) refused(why); // nothing to show until another token is given
      return;
    }
    if (!res.ok) {
      if (current()) status(`error ${res.status}`, 'bad');
      again();
      return;
    }
    let data;
    try {
      data = await res.json();
    } catch {
      if (current()) status('bad answer', 'bad');
      again();
      return;
    }
    if (!current()) return;
    $('token-form').classList.add('hidden');
    $('figures').classList.remove('hidden');
    update(data);
    again();
  }

  function refused(why) {
    clearTimeout(timer);
    $('token-form').classList.remove('hidden');
    $('figures').classList.add('hidden');
    $('token-error').textContent = why;
    status('refused', 'bad');
  }

  const get = (d, name, label = '') => (d.metrics[name] && d.metrics[name][label]) || 0;
  const sum = (d, name, only) => Object.entries(d.metrics[name] || {}).reduce((a, [k, v]) => a + (!only || only.includes(k) ? v : 0), 0);

  // rate is a counter's increase per second since the last sample; a
  // counter that went down (a restarted server) starts again from zero.
  // A label first seen in this sample counted from zero.
  function rate(cur, old, dt) {
    if (dt <= 0) return 0;
    return Math.max(cur - (old || 0), 0) / dt;
  }

  // quantile estimates a latency quantile (seconds) from the increase of a
  // histogram's cumulative buckets, interpolating within a bucket as
  // Prometheus's histogram_quantile does.
  function quantile(q, cur, old) {
    const les = Object.keys(cur || {}).sort((a, b) => (a === '+Inf' ? 1 : b === '+Inf' ? -1 : Number(a) - Number(b)));
    if (!les.length) return null;
    const inc = les.map((le) => Math.max((cur[le] || 0) - ((old && old[le]) || 0), 0));
    const total = inc[inc.length - 1];
    if (!total) return null;
    const want = q * total;
    let lo = 0;
    let below = 0;
    for (let i = 0; i < les.length; i++) {
      if (inc[i] >= want) {
        if (les[i] === '+Inf') return Number(les[i - 1] || 1);
        const hi = Number(les[i]);
        const inBucket = inc[i] - below;
        return lo + (hi - lo) * (inBucket ? (want - below) / inBucket : 1);
      }
      below = inc[i];
      lo = les[i] === '+Inf' ? lo : Number(les[i]);
    }
    return null;
  }

  const fmt = (n, digits = 0) => (n === null || n === undefined || Number.isNaN(n) ? '—' : Number(n).toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: 0 }));
  const ms = (s) => (s === null ? '—' : s * 1000 < 1 ? (s * 1000).toFixed(2) : (s * 1000).toFixed(s * 1000 < 10 ? 1 : 0));

  function update(d) {
    const now = Date.parse(d.timestamp) / 1000;
    const p = prev;
    const dt = p ? now - p.t : 0;
    const r = (name, only) => (p ? rate(sum(d, name, only), sum(p.d, name, only), dt) : 0);
    const lat = d.metrics.switchboard_delivery_seconds_bucket;
    const f = {
      t: now,
      players: d.presence.totalClients,
      operators: d.presence.totalOperators,
      away: d.presence.away,
      unjoined: get(d, 'switchboard_connections', 'none'),
      joins: r('switchboard_joins_total'),
      msgIn: r('switchboard_events_received_total', MESSAGES),
      eventsIn: r('switchboard_events_received_total'),
      out: r('switchboard_deliveries_total'),
      p50: p ? quantile(0.5, lat, p.d.metrics.switchboard_delivery_seconds_bucket) : null,
      p99: p ? quantile(0.99, lat, p.d.metrics.switchboard_delivery_seconds_bucket) : null,
      refusals: r('switchboard_refusals_total'),
      rateLimited: r('switchboard_rate_limited_total'),
    };
    prev = { t: now, d };
    history.push(f);
    while (history.length > HISTORY) history.shift();

    $('node').textContent = `${d.node ? 'node ' + d.node + ' · ' : ''}${d.version} · ${d.env}`;
    status('live', 'ok');
    tiles(d, f);
    tables(d, p, dt);
    chart('chart-conn', 'legend-conn', [
      { name: 'players', color: '#2f6fed', key: 'players' },
      { name: 'operators', color: '#16a34a', key: 'operators' },
      { name: 'away', color: '#d97706', key: 'away' },
    ]);
    chart('chart-rate', 'legend-rate', [
      { name: 'messages in', color: '#2f6fed', key: 'msgIn' },
      { name: 'deliveries out', color: '#16a34a', key: 'out' },
      { name: 'joins', color: '#9333ea', key: 'joins' },
    ]);
    chart('chart-lat', 'legend-lat', [
      { name: 'p50', color: '#2f6fed', key: 'p50', scale: 1000 },
      { name: 'p99', color: '#dc2626', key: 'p99', scale: 1000 },
    ]);
  }

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  function tile(id, label, value, sub) {
    return `<div class="tile" id="tile-${id}"><div class="label">${esc(label)}</div><div class="value${String(value).length > 9 ? ' long' : ''}">${esc(value)}</div><div class="sub">${sub ? esc(sub) : '&nbsp;'}</div></div>`;
  }

  function tiles(d, f) {
    const total = (name) => sum(d, name);
    const tr = d.transports;
    const life = quantile(0.99, d.metrics.switchboard_delivery_seconds_bucket, null);
    const cluster = d.cluster ? `${d.cluster.alive} nodes · Redis ${d.cluster.redis}` : 'single node';
    const html = [
      tile('players', 'Players joined', fmt(f.players), `${fmt(f.away)} away${d.cluster ? ` · ${fmt(d.presence.clients)} here` : ''}`),
      tile('operators', 'Operators joined', fmt(f.operators), d.cluster ? `${fmt(d.presence.operators)} here` : ''),
      tile('sockets', 'Sockets not joined', fmt(f.unjoined), 'connected, no join yet'),
      tile('transports', 'Websocket / polling', tr ? `${fmt(tr.websocket)} / ${fmt(tr.polling)}` : '—', tr ? `${fmt(tr.upgraded)} upgraded from polling` : 'served by the library'),
      tile('joins', 'Joins / s', fmt(f.joins, 1), `${fmt(total('switchboard_joins_total'))} in all`),
      tile('in', 'Messages in / s', fmt(f.msgIn, 1), `${fmt(f.eventsIn, 1)} events / s`),
      tile('out', 'Deliveries out / s', fmt(f.out, 1), `${fmt(total('switchboard_deliveries_total'))} in all`),
      tile('latency', 'Latency p50 / p99 ms', `${ms(f.p50)} / ${ms(f.p99)}`, `p99 since start ${ms(life)} ms`),
      tile('refusals', 'Refusals / s', fmt(f.refusals, 1), `${fmt(total('switchboard_refusals_total'))} in all`),
      tile('ratelimited', 'Rate-limit hits', fmt(total('switchboard_rate_limited_total')), `${fmt(f.rateLimited, 1)} / s`),
      tile('slow', 'Slow-consumer cut-offs', fmt(get(d, 'switchboard_refusals_total', 'slow_consumer')), 'readers cut for falling behind'),
      tile('queue', 'Offline queue', fmt(get(d, 'switchboard_offline_queue_messages')), `${fmt(get(d, 'switchboard_offline_queue_total', 'queued'))} queued · ${fmt(get(d, 'switchboard_offline_queue_total', 'delivered'))} delivered`),
      tile('recovery', 'Recovered / away', `${fmt(get(d, 'switchboard_recovery_total', 'recovered'))} / ${fmt(get(d, 'switchboard_recovery_total', 'away'))}`, `${fmt(get(d, 'switchboard_recovery_total', 'fresh'))} fresh · ${fmt(get(d, 'switchboard_recovery_total', 'expired'))} expired`),
      tile('mailbox', 'Router mailbox', fmt(get(d, 'switchboard_router_mailbox_depth')), 'messages waiting'),
      tile('process', 'Memory', `${fmt(get(d, 'process_resident_memory_bytes') / 1e6)} MB`, `${fmt(get(d, 'go_goroutines'))} goroutines · ${fmt(get(d, 'process_open_fds'))} fds`),
      tile('cluster', 'Cluster', d.cluster ? fmt(d.cluster.alive) : '1', cluster),
    ];
    $('tiles').innerHTML = html.join('');
  }

  function table(id, head, rows) {
    const t = $(id);
    t.textContent = '';
    const tr = document.createElement('tr');
    head.forEach((h, i) => {
      const th = document.createElement('th');
      th.textContent = h;
      if (i) th.className = 'n';
      tr.append(th);
    });
    t.append(tr);
    if (!rows.length) rows = [['none', ...head.slice(1).map(() => '')]];
    for (const row of rows) {
      const r = document.createElement('tr');
      row.forEach((c, i) => {
        const td = document.createElement('td');
        td.textContent = c;
        if (i) td.className = 'n';
        r.append(td);
      });
      t.append(r);
    }
  }

  function perLabel(d, p, dt, name) {
    return Object.entries(d.metrics[name] || {})
      .map(([k, v]) => [k, rate(v, p && p.d.metrics[name] ? p.d.metrics[name][k] : undefined, dt), v])
      .sort((a, b) => b[2] - a[2]);
  }

  function tables(d, p, dt) {
    table('t-refusals', ['reason', '/ s', 'in all'], perLabel(d, p, dt, 'switchboard_refusals_total').map(([k, r, v]) => [k, fmt(r, 1), fmt(v)]));
    table('t-in', ['event', '/ s', 'in all'], perLabel(d, p, dt, 'switchboard_events_received_total').map(([k, r, v]) => [k, fmt(r, 1), fmt(v)]));
    table('t-out', ['event', '/ s', 'in all'], perLabel(d, p, dt, 'switchboard_deliveries_total').map(([k, r, v]) => [k, fmt(r, 1), fmt(v)]));
    const cont = [];
    for (const [k, v] of Object.entries(d.metrics.switchboard_recovery_total || {})) cont.push([`recovery: ${k}`, fmt(v)]);
    for (const [k, v] of Object.entries(d.metrics.switchboard_offline_queue_total || {})) cont.push([`offline queue: ${k}`, fmt(v)]);
    cont.push(['waiting for an operator now', fmt(get(d, 'switchboard_offline_queue_messages'))]);
    table('t-continuity', ['what', 'count'], cont);
    $('cluster-card').classList.toggle('hidden', !d.cluster);
    if (d.cluster) nodesTable(d);
    table('t-clients', ['player', 'since'], d.clients.map((c) => [`${c.username || c.name || c.socketId}${c.node ? ' @' + c.node : ''}`, new Date(c.connectedAt).toLocaleTimeString()]));
    table('t-operators', ['operator', 'since'], d.operators.map((o) => [`${o.name || o.socketId} (${o.operatorId ?? '?'})${o.node ? ' @' + o.node : ''}`, new Date(o.connectedAt).toLocaleTimeString()]));
  }

  // Each node's rates come from two of its own snapshots, by their
  // timestamps: another node's is rewritten once a second, and reading the
  // same one twice keeps the rates it gave.
  const nodesSeen = new Map();

  function nodeRates(n) {
    const t = Date.parse(n.timestamp) / 1000;
    const seen = nodesSeen.get(n.node);
    if (seen && seen.t === t) return seen.rates;
    const dt = seen ? t - seen.t : 0;
    const r = (name, only) => (seen ? rate(sum(n, name, only), sum(seen.n, name, only), dt) : null);
    const lat = n.metrics.switchboard_delivery_seconds_bucket;
    const rates = {
      msgIn: r('switchboard_events_received_total', MESSAGES),
      out: r('switchboard_deliveries_total'),
      refusals: r('switchboard_refusals_total'),
      p99: seen ? quantile(0.99, lat, seen.n.metrics.switchboard_delivery_seconds_bucket) : null,
    };
    nodesSeen.set(n.node, { t, n, rates });
    return rates;
  }

  function nodesTable(d) {
    const now = Date.parse(d.timestamp);
    const shown = new Set();
    const rows = (d.cluster.figures || []).map((n) => {
      shown.add(n.node);
      const r = nodeRates(n);
      const tr = n.transports;
      return [
        `${n.node}${n.node === d.cluster.node ? ' (this one)' : ''}`,
        `${fmt(get(n, 'switchboard_connections', 'client'))} / ${fmt(get(n, 'switchboard_connections', 'operator'))} / ${fmt(get(n, 'switchboard_connections', 'none'))}`,
        tr ? `${fmt(tr.websocket)} / ${fmt(tr.polling)} / ${fmt(tr.upgraded)}` : '—',
        fmt(r.msgIn, 1),
        fmt(r.out, 1),
        fmt(r.refusals, 1),
        fmt(sum(n, 'switchboard_rate_limited_total')),
        fmt(get(n, 'switchboard_refusals_total', 'slow_consumer')),
        ms(r.p99),
        fmt(get(n, 'process_resident_memory_bytes') / 1e6),
        fmt(Math.max(now - Date.parse(n.timestamp), 0) / 1000, 1),
      ];
    });
    for (const n of d.cluster.nodes || []) {
      if (!shown.has(n.node)) rows.push([`${n.node} (no figures)`, `${fmt(n.clients)} / ${fmt(n.operators)} / —`, '—', '—', '—', '—', '—', '—', '—', '—', '—']);
    }
    for (const id of nodesSeen.keys()) if (!shown.has(id)) nodesSeen.delete(id);
    table('t-nodes', ['node', 'players / ops / not joined', 'ws / polling / upgraded', 'msgs in / s', 'out / s', 'refused / s', 'rate-limited', 'slow cut', 'p99 ms', 'MB', 'age s'], rows);
  }

  function chart(canvasId, legendId, series) {
    const c = $(canvasId);
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (c.width !== w * dpr || c.height !== h * dpr) {
      c.width = w * dpr;
      c.height = h * dpr;
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const val = (f, s) => (f[s.key] === null || f[s.key] === undefined ? null : f[s.key] * (s.scale || 1));
    let max = 0;
    for (const f of history) for (const s of series) max = Math.max(max, val(f, s) || 0);
    max = niceMax(max);
    const left = 34;
    const bottom = h - 14;
    g.font = '10px system-ui, sans-serif';
    g.fillStyle = '#667085';
    g.strokeStyle = '#eceef2';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = 4 + ((bottom - 4) * i) / 4;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(w, y);
      g.stroke();
      g.fillText(fmtAxis(max - (max * i) / 4), 2, y + 3);
    }
    g.fillText('-5 min', left, h - 2);
    g.fillText('now', w - 22, h - 2);
    const x = (i) => left + ((w - left) * (HISTORY - history.length + i)) / (HISTORY - 1);
    const y = (v) => bottom - ((bottom - 4) * v) / max;
    for (const s of series) {
      g.strokeStyle = s.color;
      g.lineWidth = 1.6;
      g.beginPath();
      let pen = false;
      history.forEach((f, i) => {
        const v = val(f, s);
        if (v === null) {
          pen = false;
          return;
        }
        if (pen) g.lineTo(x(i), y(v));
        else g.moveTo(x(i), y(v));
        pen = true;
      });
      g.stroke();
    }
    const legend = $(legendId);
    legend.textContent = '';
    const last = history[history.length - 1] || {};
    for (const s of series) {
      const span = document.createElement('span');
      const swatch = document.createElement('i');
      swatch.style.background = s.color;
      span.append(swatch, `${s.name} ${fmt(val(last, s), 1)}`);
      legend.append(span);
    }
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function fmtAxis(v) {
    return v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : v >= 10 ? v.toFixed(0) : v.toFixed(v >= 1 ? 1 : 2);
  }

  tick();
})();
