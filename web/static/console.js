// The operator console: join (with a token when operators are
// authenticated), then every open chat as it arrives, each with its
// conversation, typing, other operators' replies and an unread count.
// Under SWITCHBOARD_ROUTING=claim or auto (docs/ROUTING.md) each chat also
// shows its owner or its place in the queue, with claim, release, watch and
// transfer, and the header an available / away switch.
'use strict';

(function () {
  const { config, el, bubble, note, append, typingSender, refusal, limitsText, readImage } = SB;
  const $ = (id) => document.getElementById(id);
  const STORE = 'switchboard.console';

  let socket = null;
  let me = null;
  let active = null;
  const chats = new Map(); // clientId -> chat

  // Routing: who owns each chat, the waiting chats in queue order (next
  // first), the chats this operator watches, and its availability.
  const routed = ['claim', 'auto'].includes(document.body.dataset.routing);
  const owners = new Map(); // clientId -> {operatorId, operatorName}
  let queue = [];
  const watching = new Set();
  let available = true;
  const same = (a, b) => a !== undefined && a !== null && String(a) === String(b);

  if (!config.operatorAuth) {
    $('token-row').classList.add('hidden');
    $('auth-note').textContent = 'Operators are not authenticated on this server: anyone may join as an operator. Set SWITCHBOARD_JWT_SECRET to require a token.';
  } else {
    $('auth-note').textContent = 'This server authenticates operators: paste a JWT signed with its key (its sub or operatorId claim is your id).';
  }
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE)) || {};
    $('op-name').value = saved.name || '';
    $('op-id').value = saved.operatorId ?? '';
    $('op-token').value = saved.token || '';
  } catch {}

  function status(text, kind = '') {
    const s = $('status');
    s.textContent = text;
    s.className = `status ${kind}`;
  }

  // An operator id that is a whole number goes as a number, as CRMs send it.
  function operatorId(v) {
    return /^\d{1,15}$/.test(v) ? Number(v) : v;
  }

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('op-name').value.trim();
    const id = $('op-id').value.trim();
    const token = $('op-token').value.trim();
    if (!name || !id) {
      $('login-error').textContent = 'A name and an operator id are needed.';
      return;
    }
    if (config.operatorAuth && !token) {
      $('login-error').textContent = 'This server needs an operator token.';
      return;
    }
    $('login-error').textContent = '';
    me = { name, operatorId: operatorId(id), token };
    sessionStorage.setItem(STORE, JSON.stringify({ name, operatorId: id, token }));
    connect();
  });

  function connect() {
    $('join').disabled = true;
    status('connecting…', 'warn');
    socket = SIO.connect(config.path, { auth: () => (me.token ? { token: me.token } : {}) });
    window.switchboardConsole = socket; // for tests and the curious
    socket.on('connect', ({ recovered }) => {
      if (recovered) {
        status('connected · recovered', 'ok');
        return;
      }
      socket.emit('join', { role: 'operator', name: me.name, operatorId: me.operatorId }, (reply) => {
        if (!reply || !reply.ok) {
          refused(`Join refused: ${refusal(reply)}`);
          return;
        }
        $('login').classList.add('hidden');
        $('console').classList.remove('hidden');
        $('who').textContent = `${me.name} · operator ${me.operatorId}`;
        status('connected', 'ok');
        $('availability').classList.toggle('hidden', !routed);
        // A new socket starts available: say again that this operator is away.
        if (routed && !available) socket.emit('setStatus', { status: 'away' });
      });
    });
    socket.on('disconnect', (reason) => {
      if (reason !== 'io client disconnect') status('away · reconnecting…', 'warn');
    });
    socket.on('connect_error', (e) => refused(`Cannot connect: ${e.message || 'refused'}`));
    socket.on('newChat', (c) => addChat(c));
    socket.on('incomingMessage', (m) => {
      const c = chatFor(m.from);
      c.typing = false;
      message(c, bubble('theirs', m, c.username), true);
    });
    socket.on('operatorBroadcast', (m) => {
      message(chatFor(m.clientId), bubble('other', m, `${m.operatorName || 'operator'} (another operator)`), true);
    });
    socket.on('clientTyping', (m) => {
      const c = chats.get(m.from);
      if (!c) return;
      c.typing = Boolean(m.isTyping);
      render(c);
    });
    socket.on('chatAway', (m) => stateOf(m.clientId, 'away', 'The player is away: their connection dropped. Replies are kept for them.'));
    socket.on('chatBack', (m) => stateOf(m.clientId, 'open', 'The player is back.'));
    socket.on('chatEnded', (m) => {
      if (!m.clientId) return;
      owners.delete(m.clientId);
      watching.delete(m.clientId);
      unqueue(m.clientId);
      const why = m.reason === 'disconnect' ? 'The player left (disconnected).' : 'Chat ended.';
      stateOf(m.clientId, 'ended', why);
      renderAll();
    });
    socket.on('chatQueued', (m) => {
      owners.delete(m.clientId);
      unqueue(m.clientId);
      queue.splice(Math.min(Math.max((m.position | 0) - 1, 0), queue.length), 0, m.clientId);
      // A waiting chat can be claimed, whether or not its newChat came here.
      const c = chatFor(m.clientId);
      if (c.state === 'ended') stateOf(m.clientId, 'open', 'The chat is back.');
      renderAll();
    });
    socket.on('chatAssigned', (m) => {
      unqueue(m.clientId);
      const was = owners.get(m.clientId);
      owners.set(m.clientId, { operatorId: m.operatorId, operatorName: m.operatorName });
      const c = chats.get(m.clientId);
      if (c && !(was && same(was.operatorId, m.operatorId))) {
        append(c.log, note(same(m.operatorId, me.operatorId) ? 'You own this chat.' : `${m.operatorName || 'Operator ' + m.operatorId} owns this chat.`));
      }
      renderAll();
    });
    socket.on('chatError', (e) => {
      const text = `${e.event ? e.event + ': ' : ''}${e.code}: ${e.message}`;
      if (active) append(active.log, note(text, 'bad'));
      else $('login-error').textContent = text;
    });
  }

  function unqueue(clientId) {
    queue = queue.filter((id) => id !== clientId);
  }

  $('availability').addEventListener('click', () => {
    if (!socket) return;
    const want = available ? 'away' : 'available';
    socket.emit('setStatus', { status: want }, (r) => {
      if (!r || !r.ok) {
        $('availability').title = `Not changed: ${refusal(r)}`;
        return;
      }
      available = want === 'available';
      const b = $('availability');
      b.textContent = available ? 'Available' : 'Away';
      b.classList.toggle('danger', !available);
      b.classList.toggle('secondary', available);
    });
  });

  // route sends a routing request for a chat; a refusal shows in its log.
  function route(chat, event, payload, done) {
    socket.emit(event, Object.assign({ clientId: chat.clientId }, payload), (r) => {
      if (!r || !r.ok) append(chat.log, note(`${event}: ${refusal(r)}`, 'bad'));
      else if (done) done();
      render(chat);
    });
  }

  function refused(text) {
    if (socket) socket.disconnect();
    socket = null;
    $('join').disabled = false;
    $('login').classList.remove('hidden');
    $('console').classList.add('hidden');
    $('login-error').textContent = text;
    status('refused', 'bad');
  }

  function chatFor(clientId) {
    return chats.get(clientId) || addChat({ clientId, username: clientId.slice(0, 8), placeholder: true });
  }

  function addChat(c) {
    if (chats.has(c.clientId)) {
      // A chat that comes back (a reload, a recovery) is the same chat.
      const old = chats.get(c.clientId);
      if (old.placeholder && !c.placeholder) {
        // Known so far by its id only (a queued chat in auto mode): now by name.
        old.placeholder = false;
        old.username = c.username || c.clientId;
        old.phone = c.phone;
        old.view.querySelector('.title').textContent = old.username;
        old.view.querySelector('.phone').textContent = old.phone || '';
        render(old);
      }
      if (old.state === 'ended') stateOf(c.clientId, 'open', 'The player is back.');
      return old;
    }
    const view = $('chat-template').content.firstElementChild.cloneNode(true);
    const chat = {
      clientId: c.clientId,
      username: c.username || c.clientId,
      placeholder: Boolean(c.placeholder),
      phone: c.phone,
      state: 'open',
      unread: 0,
      typing: false,
      view,
      log: view.querySelector('.log'),
      item: el('div', { class: 'chat-item', onclick: () => select(chat) }),
    };
    chat.typingSender = typingSender((isTyping) => {
      if (chat.state !== 'ended') socket.emit('operatorTyping', { to: chat.clientId, isTyping });
    });
    view.querySelector('.title').textContent = chat.username;
    view.querySelector('.phone').textContent = chat.phone || '';
    view.querySelector('.limits').textContent = limitsText();
    view.querySelector('.back').addEventListener('click', () => select(null));
    view.querySelector('.end').addEventListener('click', () => {
      socket.emit('endChat', { clientId: chat.clientId, operatorId: me.operatorId });
    });
    view.querySelector('.routing').classList.toggle('hidden', !routed);
    view.querySelector('.claim').addEventListener('click', () => route(chat, 'claimChat', {}));
    view.querySelector('.release').addEventListener('click', () => route(chat, 'releaseChat', {}, () => watching.delete(chat.clientId)));
    view.querySelector('.watch').addEventListener('click', () => route(chat, 'watchChat', {}, () => watching.add(chat.clientId)));
    const to = view.querySelector('.to');
    view.querySelector('.transfer').addEventListener('submit', (e) => {
      e.preventDefault();
      const id = to.value.trim();
      if (!id) return;
      route(chat, 'transferChat', { toOperatorId: operatorId(id) }, () => {
        to.value = '';
      });
    });
    const text = view.querySelector('.text');
    const form = view.querySelector('.compose');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!text.value.trim() || chat.state === 'ended') return;
      chat.typingSender.stop();
      reply(chat, { type: 'text', message: text.value });
      text.value = '';
    });
    text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    text.addEventListener('input', () => chat.typingSender.input());
    const file = view.querySelector('.file');
    file.addEventListener('change', async () => {
      const f = file.files[0];
      file.value = '';
      if (!f) return;
      try {
        reply(chat, await readImage(f));
      } catch (err) {
        append(chat.log, note(err.message, 'bad'));
      }
    });
    append(chat.log, note(`${chat.username}${chat.phone ? ' · ' + chat.phone : ''} started a chat.`));
    chats.set(c.clientId, chat);
    const list = $('chats');
    list.querySelector('.empty')?.remove();
    list.prepend(chat.item);
    render(chat);
    // On a wide screen the first chat opens by itself; a phone shows the list.
    if (!active && matchMedia('(min-width: 701px)').matches) select(chat);
    return chat;
  }

  function reply(chat, payload) {
    const m = Object.assign({ to: chat.clientId, operatorId: me.operatorId, operatorName: me.name }, payload);
    const b = bubble('mine', Object.assign({ timestamp: new Date().toISOString() }, payload), 'You');
    append(chat.log, b);
    socket.emit('operatorMessage', m, (r) => {
      const meta = b.querySelector('.meta');
      if (!r || !r.ok) {
        b.classList.add('failed');
        meta.textContent += ` · not sent (${refusal(r)})`;
        return;
      }
      b.dataset.id = r.id;
      meta.textContent += r.away ? ' · kept: the player is away' : ' · sent';
    });
  }

  function message(chat, node, counts) {
    append(chat.log, node);
    if (counts && chat !== active) chat.unread++;
    render(chat);
  }

  function stateOf(clientId, state, text) {
    const c = chats.get(clientId);
    if (!c) return;
    c.state = state;
    if (state === 'ended') c.typing = false;
    append(c.log, note(text, state === 'ended' ? 'bad' : state === 'away' ? 'warn' : ''));
    render(c);
  }

  function select(chat) {
    if (active) active.typingSender.stop();
    active = chat;
    const pane = $('pane');
    pane.textContent = '';
    $('console').classList.toggle('has-active', Boolean(chat));
    if (!chat) {
      pane.append(el('div', { class: 'placeholder', text: 'Choose a chat' }));
    } else {
      chat.unread = 0;
      pane.append(chat.view);
      chat.log.scrollTop = chat.log.scrollHeight;
    }
    for (const c of chats.values()) render(c);
  }

  function renderAll() {
    for (const c of chats.values()) render(c);
  }

  // routingOf is a chat's owner or place as this operator sees it.
  function routingOf(c) {
    const owner = owners.get(c.clientId);
    const mine = Boolean(owner && me && same(owner.operatorId, me.operatorId));
    const place = queue.indexOf(c.clientId) + 1;
    let text = 'not assigned';
    if (mine) text = 'yours';
    else if (owner) text = `owner: ${owner.operatorName || owner.operatorId}`;
    else if (place) text = `queued #${place}`;
    if (watching.has(c.clientId) && !mine) text += ' · watching';
    return { owner, mine, place, text, others: Boolean(owner && !mine) };
  }

  function render(c) {
    const ended = c.state === 'ended';
    const rt = routed ? routingOf(c) : null;
    c.item.className = `chat-item${c === active ? ' active' : ''}${ended ? ' ended' : ''}`;
    c.item.dataset.clientId = c.clientId;
    c.item.textContent = '';
    const sub = ended ? 'ended' : c.typing ? 'typing…' : c.state === 'away' ? 'away' : rt ? rt.text : c.phone || 'open';
    c.item.append(
      el('div', { class: 'who' }, el('b', { text: c.username }), el('span', { text: sub })),
      el('span', { class: `badge${c.unread ? ' unread' : ''}`, text: String(c.unread) }),
    );
    c.view.querySelector('.typing').textContent = c.typing ? `${c.username} is typing…` : '';
    const st = c.view.querySelector('.state');
    st.textContent = c.state;
    st.className = `state status ${ended ? 'bad' : c.state === 'away' ? 'warn' : 'ok'}`;
    // Another operator's chat is theirs to answer and end (not_yours).
    const theirs = Boolean(rt && rt.others);
    for (const sel of ['.text', '.send', '.file', '.end']) c.view.querySelector(sel).disabled = ended || theirs;
    if (rt) {
      const owner = c.view.querySelector('.owner');
      owner.textContent = ended ? 'ended' : rt.text;
      owner.className = `owner status ${ended ? 'bad' : rt.mine ? 'ok' : rt.owner ? '' : 'warn'}`;
      const q = (sel) => c.view.querySelector(sel);
      q('.claim').disabled = ended || Boolean(rt.owner);
      q('.release').disabled = ended || !(rt.mine || watching.has(c.clientId));
      q('.watch').disabled = ended || !rt.others || watching.has(c.clientId);
      q('.transfer button').disabled = ended || !rt.mine;
      q('.to').disabled = ended || !rt.mine;
    }
    let total = 0;
    for (const x of chats.values()) total += x.unread;
    document.title = `${total ? `(${total}) ` : ''}Switchboard · operator console`;
  }
})();
