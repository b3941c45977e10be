// chat.js -- the public web chat: one conversation per visitor, held with a
// visitor token kept in localStorage; the reply is shown growing while the
// assistant writes it (the conversation listing long-polls on its revision).
'use strict';
const KEY = 'baton.chat';
const log = document.getElementById('log');
const statusEl = document.getElementById('status');
const form = document.getElementById('send');
const input = document.getElementById('text');
let chat = null;
let rev = '';
let generation = 0;

function setStatus(text) { statusEl.textContent = text || ''; }

async function open() {
  const res = await fetch('/chat/api/open', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: '{}'});
  if (!res.ok) {
    const b = await res.json().catch(() => ({}));
    throw new Error((b.error && b.error.message) || ('cannot open a chat (' + res.status + ')'));
  }
  chat = await res.json();
  localStorage.setItem(KEY, JSON.stringify({conversationId: chat.conversationId, token: chat.token}));
}

function bubble(cls, text, testid) {
  const d = document.createElement('div');
  d.className = 'bubble ' + cls;
  d.textContent = text;
  if (testid) d.dataset.testid = testid;
  return d;
}

function render(messages) {
  const nodes = [];
  for (const m of messages) {
    if (m.direction === 'in') {
      nodes.push(bubble('in', m.text, 'visitor'));
      const r = m.reply;
      if (r && r.state === 'processing')
        nodes.push(bubble('out partial', (r.partial || '') + ' …', 'partial'));
      else if (r && r.state === 'pending')
        nodes.push(bubble('out partial', '…', 'partial'));
      else if (r && r.state === 'failed')
        nodes.push(bubble('out failed', 'The assistant could not answer this message (' +
          (r.errorReason || 'failed') + ').', 'failed'));
    } else {
      nodes.push(bubble('out', m.text, 'assistant'));
    }
  }
  log.replaceChildren(...(nodes.length ? nodes : [bubble('out', 'Say hello — the assistant answers here.', 'hint')]));
  log.scrollTop = log.scrollHeight;
}

async function follow(gen) {
  while (gen === generation) {
    try {
      const url = '/chat/api/conversations/' + encodeURIComponent(chat.conversationId) +
        '/messages?limit=1000&waitMs=25000' + (rev ? '&rev=' + encodeURIComponent(rev) : '');
      const res = await fetch(url, {headers: {Authorization: 'Bearer ' + chat.token}});
      if (gen !== generation) return;
      if (res.status === 401) {
        await open();
        rev = '';
        continue;
      }
      if (!res.ok) throw new Error('status ' + res.status);
      const body = await res.json();
      rev = body.rev;
      render(body.messages);
      setStatus('');
    } catch (e) {
      setStatus('Connection lost; retrying…');
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  }
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = input.value.trim();
  if (!text || !chat) return;
  input.disabled = true;
  try {
    const res = await fetch('/chat/api/conversations/' + encodeURIComponent(chat.conversationId) + '/messages', {
      method: 'POST', headers: {'Content-Type': 'application/json', Authorization: 'Bearer ' + chat.token},
      body: JSON.stringify({text, clientMessageId: crypto.randomUUID ? crypto.randomUUID() : String(Date.now())}),
    });
    if (res.ok) {
      input.value = '';
      setStatus('');
    } else if (res.status === 429) {
      setStatus('You are sending too fast. Try again in ' + (res.headers.get('Retry-After') || 'a few') + ' s.');
    } else {
      const b = await res.json().catch(() => ({}));
      setStatus((b.error && b.error.message) || ('Not sent (' + res.status + ').'));
    }
  } catch (e) {
    setStatus('Not sent: the server cannot be reached.');
  }
  input.disabled = false;
  input.focus();
});

async function start(fresh) {
  generation++;
  rev = '';
  try {
    const saved = fresh ? null : JSON.parse(localStorage.getItem(KEY) || 'null');
    if (saved && saved.conversationId && saved.token) chat = saved;
    else await open();
    follow(generation);
  } catch (e) {
    setStatus(String(e.message || e));
  }
}

document.getElementById('restart').addEventListener('click', () => start(true));
start(false);
