// The player's widget: a profile, then one conversation with whichever
// operators are online. A reload keeps the conversation (resumeToken).
'use strict';

(function () {
  const { config, el, bubble, note, append, typingSender, refusal, limitsText, readImage } = SB;
  const $ = (id) => document.getElementById(id);
  const log = $('log');
  const STORE = 'switchboard.widget';

  let socket = null;
  let profile = null;
  let ended = false;
  let wasConnected = false;
  let withOperator = false; // an operator took the chat (routing on)
  let stored = load();

  $('limits').textContent = limitsText();
  $('limits-intro').textContent = limitsText();

  function load() {
    try {
      return JSON.parse(sessionStorage.getItem(STORE)) || null;
    } catch {
      return null;
    }
  }

  function save(patch) {
    stored = Object.assign(stored || {}, patch);
    sessionStorage.setItem(STORE, JSON.stringify(stored));
  }

  function status(text, kind = '') {
    const s = $('status');
    s.textContent = text;
    s.className = `status ${kind}`;
  }

  function say(text, kind) {
    append(log, note(text, kind));
  }

  const typing = typingSender((isTyping) => {
    if (socket && !ended) socket.emit('clientTyping', { isTyping });
  });

  function start(p) {
    profile = p;
    ended = false;
    $('intro').classList.add('hidden');
    $('chat').classList.remove('hidden');
    $('me').textContent = p.username || p.name;
    setEnded(false);
    status('connecting…', 'warn');
    // A reloaded page proves it is the same player with its resumeToken.
    socket = SIO.connect(config.path, { auth: () => (stored && stored.resumeToken ? { resumeToken: stored.resumeToken } : {}) });
    window.switchboardWidget = socket; // for tests and the curious
    socket.on('connect', onConnect);
    socket.on('disconnect', (reason) => {
      if (reason === 'io client disconnect') return;
      status('away · reconnecting…', 'warn');
      say('Connection lost: you are away. Reconnecting…', 'warn');
    });
    socket.on('connect_error', (e) => say(`Cannot connect: ${e.message || 'refused'}`, 'bad'));
    socket.on('operatorMessage', (m) => {
      append(log, bubble('theirs', m, m.operatorName || 'Operator'));
      $('typing').textContent = '';
    });
    socket.on('operatorTyping', (m) => {
      $('typing').textContent = m && m.isTyping ? 'The operator is typing…' : '';
    });
    socket.on('chatEnded', (m) => {
      say(m && m.message ? `Chat ended: ${m.message}` : 'Chat ended', 'bad');
      finish();
    });
    socket.on('chatError', (e) => say(`${e.event ? e.event + ': ' : ''}${e.code}: ${e.message}`, 'bad'));
    // With routing on (SWITCHBOARD_ROUTING=claim or auto): the player's
    // place in the queue, and who took the chat.
    socket.on('queued', (m) => say(`You are number ${m.position} in the queue.`));
    socket.on('operatorAssigned', (m) => {
      withOperator = true;
      say(`${m.operatorName || 'An operator'} is now with you.`);
    });
  }

  function onConnect({ recovered }) {
    if (recovered) {
      status('connected · recovered', 'ok');
      say('Back: the connection recovered, nothing was lost.');
      return;
    }
    // A new session (first connect, or the server could not recover the
    // old one): join, as every widget does on connect.
    const join = { role: 'client', name: profile.name };
    if (profile.username) join.username = profile.username;
    if (profile.phone) join.phone = profile.phone;
    socket.emit('join', join, (reply) => {
      if (!reply || !reply.ok) {
        status('refused', 'bad');
        say(`Join refused: ${refusal(reply)}`, 'bad');
        return;
      }
      const resumed = stored && stored.clientId && reply.clientId === stored.clientId;
      if (reply.resumeToken) save({ profile, resumeToken: reply.resumeToken, clientId: reply.clientId });
      status(resumed ? 'connected · resumed' : 'connected', 'ok');
      if (resumed) say('Back: your conversation resumed.');
      else if (wasConnected) say('Reconnected as a new conversation.', 'warn');
      // An assignment can come before the join's answer.
      else say(withOperator ? 'Connected.' : 'Connected. An operator will answer shortly.');
      wasConnected = true;
    });
  }

  function setEnded(on) {
    ended = on;
    for (const id of ['text', 'send', 'file', 'end']) $(id).disabled = on;
    $('end').classList.toggle('hidden', on);
    $('again').classList.toggle('hidden', !on);
  }

  function finish() {
    typing.stop();
    setEnded(true);
    $('typing').textContent = '';
    status('chat ended', '');
    save({ resumeToken: null, clientId: null, ended: true });
  }

  function send(payload, label) {
    const b = bubble('mine', Object.assign({ timestamp: new Date().toISOString() }, payload), label);
    append(log, b);
    socket.emit('clientMessage', payload, (reply) => {
      const meta = b.querySelector('.meta');
      if (!reply || !reply.ok) {
        b.classList.add('failed');
        meta.textContent += ` · not sent (${refusal(reply)})`;
        return;
      }
      b.dataset.id = reply.id;
      meta.textContent += reply.queued ? ' · queued: no operator online yet' : ' · sent';
    });
  }

  $('start-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('name').value.trim();
    if (!name) {
      $('intro-error').textContent = 'A name is needed.';
      return;
    }
    const p = { name, username: $('username').value.trim(), phone: $('phone').value.trim() };
    save({ profile: p, ended: false, resumeToken: null, clientId: null });
    start(p);
  });

  $('compose').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('text').value;
    if (!text.trim() || ended) return;
    typing.stop();
    send({ type: 'text', message: text }, 'You');
    $('text').value = '';
  });
  $('text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      $('compose').requestSubmit();
    }
  });
  $('text').addEventListener('input', () => typing.input());

  $('file').addEventListener('change', async () => {
    const file = $('file').files[0];
    $('file').value = '';
    if (!file || ended) return;
    try {
      send(await readImage(file), 'You');
    } catch (err) {
      say(err.message, 'bad');
    }
  });

  $('end').addEventListener('click', () => {
    socket.emit('endChat', {});
    say('You ended the chat.');
    finish();
  });

  $('again').addEventListener('click', () => {
    if (socket) socket.disconnect();
    socket = null;
    log.textContent = '';
    wasConnected = false;
    withOperator = false;
    stored = null;
    sessionStorage.removeItem(STORE);
    $('chat').classList.add('hidden');
    $('intro').classList.remove('hidden');
    status('not connected');
  });

  // A reload within the recovery window goes straight back to its chat.
  if (stored && stored.profile && stored.resumeToken && !stored.ended) {
    start(stored.profile);
  } else if (stored && stored.profile) {
    $('name').value = stored.profile.name || '';
    $('username').value = stored.profile.username || '';
    $('phone').value = stored.profile.phone || '';
  }
})();
