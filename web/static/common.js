// Helpers shared by the widget and the console.
'use strict';

(function (global) {
  const body = document.body.dataset;

  /** The server's settings, from the page's data attributes. */
  const config = {
    path: body.path || '/chat',
    maxImageBytes: Number(body.maxImage || 10000000),
    maxTextChars: Number(body.maxText || 5000),
    imageTypes: (body.imageTypes || '').split(',').filter(Boolean),
    operatorAuth: body.operatorAuth === 'true',
  };

  /** Creates an element: el('div', {class: 'x', text: 'y'}, child...). */
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }

  function bytes(n) {
    if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)} MB`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
    return `${n} B`;
  }

  function clock(ts) {
    const d = ts ? new Date(ts) : new Date();
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  /** What the image limits are, in words. */
  function limitsText() {
    const types = config.imageTypes.map((t) => t.replace('image/', '').toUpperCase()).join(', ') || 'any image';
    // base64 is 4 characters for every 3 bytes of file.
    const file = Math.floor((config.maxImageBytes * 3) / 4);
    return `Images: ${types}, up to ${bytes(file)} (${config.maxImageBytes.toLocaleString('en')} characters of base64). Text up to ${config.maxTextChars.toLocaleString('en')} characters.`;
  }

  /**
   * Reads a chosen file as the payload of an image message, or throws an
   * Error saying which limit it breaks (the server checks the same).
   */
  async function readImage(file) {
    if (config.imageTypes.length && !config.imageTypes.includes(file.type)) {
      throw new Error(`${file.name}: ${file.type || 'this type'} is not allowed (${config.imageTypes.join(', ')})`);
    }
    const dataURL = await new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(String(r.result));
      r.onerror = () => reject(new Error(`${file.name}: cannot be read`));
      r.readAsDataURL(file);
    });
    if (dataURL.length > config.maxImageBytes) {
      throw new Error(`${file.name}: ${bytes(file.size)} is over the limit of ${bytes(Math.floor((config.maxImageBytes * 3) / 4))}`);
    }
    return { type: 'image', image: dataURL, name: file.name, mimeType: file.type, size: file.size };
  }

  /** An image message's picture: a data URL as sent, or bare base64 with its type. */
  function imageSrc(m) {
    if (!m.image) return null;
    if (m.image.startsWith('data:')) return /^data:image\/[a-z+.-]+;base64,/i.test(m.image) ? m.image : null;
    return `data:${m.mimeType || 'image/png'};base64,${m.image}`;
  }

  /** A chat bubble: kind is mine, theirs or other; who and ts go in its meta line. */
  function bubble(kind, m, who) {
    const b = el('div', { class: `msg ${kind}` });
    b.dataset.type = m.type;
    if (m.type === 'image') {
      const src = imageSrc(m);
      if (m.message) b.append(el('span', { text: m.message }));
      b.append(src ? el('img', { src, alt: m.name || 'image' }) : el('span', { text: `[image ${m.name || ''}]` }));
    } else {
      b.append(document.createTextNode(m.message ?? ''));
    }
    b.append(el('span', { class: 'meta', text: [who, clock(m.timestamp)].filter(Boolean).join(' · ') }));
    return b;
  }

  function note(text, kind = '') {
    return el('div', { class: `note ${kind}`, text });
  }

  /** Keeps a log scrolled to its end when it was there. */
  function append(log, node) {
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(node);
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  /**
   * Typing indicator sender: call input() on every keystroke and stop()
   * when the message goes; it sends true once, then false after a pause.
   */
  function typingSender(send, pauseMs = 1500) {
    let typing = false;
    let timer = null;
    return {
      input() {
        if (!typing) {
          typing = true;
          send(true);
        }
        clearTimeout(timer);
        timer = setTimeout(() => this.stop(), pauseMs);
      },
      stop() {
        clearTimeout(timer);
        if (typing) {
          typing = false;
          send(false);
        }
      },
    };
  }

  function refusal(reply) {
    const e = reply && reply.error;
    return e ? `${e.code}: ${e.message}` : 'refused';
  }

  global.SB = { config, el, bytes, clock, limitsText, readImage, bubble, note, append, typingSender, refusal };
})(window);
