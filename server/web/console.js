// console.js -- the operator console: every view reads and every action
// writes through the ordinary /v1 routes, with the session cookie and the
// CSRF token of this sign-in. Live views follow GET /v1/events/stream and
// refresh at most once a second. Text from the server is only ever set as
// textContent, never parsed as HTML.
'use strict';

let csrf = '';
let stopView = null;        // cleanup of the current view (streams, timers)
const view = document.getElementById('view');
const flashEl = document.getElementById('flash');

// ---- helpers ------------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function flash(text, kind) {
  flashEl.replaceChildren(h('div', {class: 'banner ' + (kind || 'ok'), 'data-testid': 'flash'}, text));
}

function ago(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round(ms / 1000);
  if (Math.abs(s) < 90) return s + ' s';
  if (Math.abs(s) < 5400) return Math.round(s / 60) + ' min';
  if (Math.abs(s) < 172800) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

function when(t) { return t ? new Date(t).toISOString().replace('T', ' ').replace('Z', '') : '—'; }

function status(s) { return h('span', {class: 'st ' + (s || '')}, s || '—'); }

function table(head, rows, empty) {
  if (!rows.length) return h('p', {class: 'empty'}, empty || 'Nothing here.');
  return h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', {scope: 'col'}, c)))),
    h('tbody', {}, rows));
}

function enc(s) { return encodeURIComponent(s); }

async function api(method, path, body) {
  const opt = {method, credentials: 'same-origin', headers: {}};
  if (method !== 'GET') opt.headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const res = await fetch(path, opt);
  if (res.status === 401) {
    location.href = '/console/login';
    throw new Error('signed out');
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!res.ok) {
    const msg = json && json.error ? json.error.code + ': ' + json.error.message : method + ' ' + path + ': ' + res.status;
    throw new Error(msg);
  }
  return json;
}

// Run an operator action after confirmation and show its result.
async function act(question, method, path, body, done) {
  if (question && !window.confirm(question)) return;
  try {
    const out = await api(method, path, body);
    flash(method + ' ' + path + ' — done.', 'ok');
    if (done) done(out);
  } catch (e) {
    flash(String(e.message || e), 'error');
  }
}

// Follow the SSE tail (fetch + reader: named events, cookie auth).
function follow(filter, onEvent) {
  const ctl = new AbortController();
  const live = document.getElementById('live');
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const res = await fetch('/v1/events/stream' + (filter ? '?event=' + enc(filter) : ''),
          {credentials: 'same-origin', signal: ctl.signal});
        if (!res.ok) throw new Error('stream ' + res.status);
        live.textContent = '● live';
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buf += dec.decode(value, {stream: true});
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
            if (data) {
              try { onEvent(JSON.parse(data)); } catch (e) { /* a malformed line is skipped */ }
            }
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      live.textContent = '○ reconnecting';
      await new Promise((ok) => setTimeout(ok, 1000));
    }
  })();
  return () => { ctl.abort(); live.textContent = ''; };
}

// Refresh fn on every event, at most once a second.
function liveRefresh(fn) {
  let timer = null;
  let last = 0;
  const stop = follow('', () => {
    if (timer) return;
    const wait = Math.max(0, 1000 - (Date.now() - last));
    timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, wait);
  });
  return () => { stop(); if (timer) clearTimeout(timer); };
}

// ---- overview -------------------------------------------------------------------

async function alertsFindings(queues) {
  // the checks of `baton alerts check` over the last 24 h
  const since = Date.now() - 86400000;
  const findings = [];
  const names = ['whatsapp.lease.heartbeat.lost', 'whatsapp.outbound.loop.error', 'whatsapp.send.failed',
    'telegram.send.failed', 'agent.job.failed'];
  for (const name of names) {
    const r = await api('GET', '/v1/events?event=' + enc(name) + '&since=' + since + '&limit=1000');
    let n = r.events.length;
    if (name === 'agent.job.failed') n = r.events.filter((e) => e.willRetry === false).length;
    if (n) findings.push(n + ' × ' + name + (name === 'agent.job.failed' ? ' (final)' : '') + ' in the last 24 h');
  }
  for (const q of queues) {
    if (q.stale) findings.push(q.stale + ' stale processing job(s) in ' + q.queue);
    if (q.counts.failed) findings.push(q.counts.failed + ' failed job(s) in ' + q.queue);
  }
  return findings;
}

async function overview() {
  const gen = routeGen;
  const [q, l] = await Promise.all([api('GET', '/v1/queues'), api('GET', '/v1/leases')]);
  const findings = await alertsFindings(q.queues);
  const now = Date.now();
  paint(gen,
    h('h1', {}, 'Overview'),
    h('div', {class: 'card'}, h('h2', {}, 'Queues'),
      table(['Queue', 'Pending', 'Processing', 'Completed', 'Failed', 'Oldest pending', 'Stale'],
        q.queues.map((x) => h('tr', {'data-queue': x.queue},
          h('td', {}, h('a', {href: '#jobs?queue=' + enc(x.queue)}, x.queue)),
          ['pending', 'processing', 'completed', 'failed'].map((s) => h('td', {class: 'num'}, x.counts[s])),
          h('td', {class: 'num'}, ago(x.oldestPendingAgeMs)), h('td', {class: 'num'}, x.stale))),
        'No jobs yet.')),
    h('div', {class: 'card'}, h('h2', {}, 'Lease holders'),
      table(['Channel', 'Account', 'Holder', 'Token', 'Time left'],
        l.leases.map((x) => h('tr', {}, h('td', {}, x.channel), h('td', {}, x.accountId), h('td', {}, x.ownerId),
          h('td', {class: 'num'}, x.token), h('td', {class: 'num'}, ago(x.expiresAt - now)))),
        'No lease is held.')),
    h('div', {class: 'card', 'data-testid': 'alerts'}, h('h2', {}, 'Alerts (the checks of baton alerts check)'),
      findings.length ? h('ul', {}, findings.map((f) => h('li', {}, f))) : h('p', {class: 'st ok'}, 'healthy')));
}

// ---- jobs ---------------------------------------------------------------------------

async function jobs(params) {
  const gen = routeGen;
  const queue = params.get('queue') || '';
  const st = params.get('status') || '';
  const cursor = params.get('cursor') || '';
  let qs = '?limit=50' + (queue ? '&queue=' + enc(queue) : '') + (st ? '&status=' + enc(st) : '') +
    (cursor ? '&cursor=' + enc(cursor) : '');
  const [r, qs2] = await Promise.all([api('GET', '/v1/jobs' + qs), api('GET', '/v1/queues')]);
  const go = (p) => { location.hash = 'jobs?' + new URLSearchParams(p).toString(); };
  const qsel = h('select', {id: 'f-queue', 'aria-label': 'Queue'}, h('option', {value: ''}, 'all queues'),
    qs2.queues.map((x) => h('option', {value: x.queue, selected: x.queue === queue}, x.queue)));
  const ssel = h('select', {id: 'f-status', 'aria-label': 'Status'}, h('option', {value: ''}, 'any status'),
    ['pending', 'processing', 'completed', 'failed'].map((s) => h('option', {value: s, selected: s === st}, s)));
  const apply = () => go({queue: qsel.value, status: ssel.value});
  qsel.addEventListener('change', apply);
  ssel.addEventListener('change', apply);
  paint(gen,
    h('h1', {}, 'Jobs'),
    h('div', {class: 'row'}, qsel, ssel,
      h('button', {type: 'button', class: 'plain', onclick: () => act('Requeue every stale job now?', 'POST',
        '/v1/jobs/requeue-stale', {}, (o) => flash('Requeued ' + o.requeued.length + ', failed ' + o.failed.length + '.'))},
      'Requeue stale now')),
    h('div', {class: 'card'}, table(['Id', 'Queue', 'Status', 'Attempts', 'Created', 'Updated', 'Error'],
      r.jobs.map((j) => h('tr', {'data-job': j.id},
        h('td', {}, h('a', {href: '#job/' + j.id}, j.id)), h('td', {}, j.queue), h('td', {}, status(j.status)),
        h('td', {class: 'num'}, j.attempts + '/' + j.maxAttempts), h('td', {}, when(j.createdAt)),
        h('td', {}, when(j.updatedAt)), h('td', {}, j.errorReason || ''))),
      'No jobs match.')),
    h('div', {class: 'row'},
      cursor ? h('button', {type: 'button', class: 'plain', onclick: () => go({queue, status: st})}, 'First page') : null,
      r.nextCursor ? h('button', {type: 'button', class: 'plain', onclick: () => go({queue, status: st, cursor: r.nextCursor})},
        'Next page') : null));
}

async function job(id) {
  const gen = routeGen;
  const j = (await api('GET', '/v1/jobs/' + enc(id))).job;
  const reload = () => route();
  const rows = [['Status', status(j.status)], ['Queue', j.queue], ['Attempts', j.attempts + ' of ' + j.maxAttempts],
    ['Priority', j.priority], ['Run at', when(j.runAt)], ['Locked by', j.lockedBy || '—'],
    ['Locked until', when(j.lockedUntil)], ['Started', when(j.startedAt)], ['Completed', when(j.completedAt)],
    ['Created', when(j.createdAt)], ['Updated', when(j.updatedAt)],
    ['Error', j.errorReason ? j.errorReason + (j.errorMessage ? ': ' + j.errorMessage : '') : '—'],
    ['Conversation', j.conversationId ? h('a', {href: '#conv/' + enc(j.conversationId)}, j.conversationId) : '—'],
    ['Message', j.messageId || '—']];
  const terminal = j.status === 'completed' || j.status === 'failed';
  paint(gen,
    h('h1', {}, 'Job ' + j.id),
    h('div', {class: 'row'},
      (j.status === 'failed' || j.status === 'processing') ? h('button', {type: 'button', id: 'retry',
        onclick: () => act('Retry job ' + j.id + ' now?', 'POST', '/v1/jobs/' + j.id + '/retry', {}, reload)}, 'Retry') : null,
      !terminal ? h('button', {type: 'button', class: 'danger', id: 'failnow', onclick: () => {
        const reason = window.prompt('Fail job ' + j.id + ': reason?', 'operator');
        if (reason) act(null, 'POST', '/v1/jobs/' + j.id + '/fail-now', {errorReason: reason, errorMessage: 'failed from the console'}, reload);
      }}, 'Fail…') : null,
      !terminal ? h('button', {type: 'button', class: 'danger', id: 'cancel', onclick: () => act('Cancel job ' + j.id + '?',
        'POST', '/v1/jobs/' + j.id + '/cancel', {}, reload)}, 'Cancel') : null),
    h('div', {class: 'card'}, h('table', {}, h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', {scope: 'row'}, k),
      h('td', {'data-field': k}, v)))))),
    h('div', {class: 'card'}, h('h2', {}, 'Payload'), h('pre', {}, JSON.stringify(j.payload, null, 2))),
    h('div', {class: 'card'}, h('h2', {}, 'Result'), h('pre', {}, JSON.stringify(j.result, null, 2))));
}

// ---- leases and accounts ---------------------------------------------------------

async function leases() {
  const gen = routeGen;
  const [held, acc] = await Promise.all([api('GET', '/v1/leases'), api('GET', '/v1/accounts')]);
  const keys = new Map();
  for (const a of acc.accounts) keys.set(a.channel + '/' + a.accountId, {channel: a.channel, accountId: a.accountId, account: a});
  for (const l of held.leases) {
    const k = l.channel + '/' + l.accountId;
    keys.set(k, Object.assign(keys.get(k) || {channel: l.channel, accountId: l.accountId}, {lease: l}));
  }
  for (const v of keys.values())
    if (!v.lease) v.lease = await api('GET', '/v1/leases/' + enc(v.channel) + '/' + enc(v.accountId));
  const rows = [...keys.values()].map((v) => {
    const l = v.lease;
    const path = enc(v.channel) + '/' + enc(v.accountId);
    return h('tr', {'data-lease': v.channel + '/' + v.accountId},
      h('td', {}, v.channel), h('td', {}, v.accountId),
      h('td', {}, v.account ? h('label', {}, h('input', {type: 'checkbox', checked: v.account.enabled,
        'aria-label': 'enabled', onchange: (ev) => act(null, 'PUT', '/v1/accounts/' + path,
          {enabled: ev.target.checked}, route)}),
        v.account.enabled ? ' enabled' : ' disabled') : h('span', {class: 'muted'}, 'no account')),
      h('td', {}, l && l.held ? l.ownerId : h('span', {class: 'muted'}, 'free')),
      h('td', {class: 'num'}, l ? l.token : '—'),
      h('td', {class: 'num countdown', 'data-expires': l && l.held ? l.expiresAt : ''}, l && l.held ? ago(l.expiresAt - Date.now()) : '—'),
      h('td', {class: 'num'}, l ? l.transitions : 0),
      h('td', {}, l && l.held ? h('button', {type: 'button', class: 'danger', onclick: () =>
        act('Force-release the lease on ' + v.channel + '/' + v.accountId + ' held by ' + l.ownerId + '?', 'POST',
          '/v1/leases/' + path + '/force-release', {}, route)}, 'Force release') : null));
  });
  paint(gen, h('h1', {}, 'Leases and accounts'),
    h('div', {class: 'card'}, table(['Channel', 'Account', 'Account state', 'Holder', 'Token', 'Expires in', 'Transitions', ''],
      rows, 'No accounts and no leases.')));
}

function countdowns() {
  for (const td of document.querySelectorAll('td.countdown')) {
    const t = Number(td.dataset.expires);
    if (t) td.textContent = ago(t - Date.now());
  }
}

// ---- sessions ------------------------------------------------------------------------

async function sessions(params) {
  const gen = routeGen;
  const channel = params.get('channel') || 'whatsapp';
  const account = params.get('account') || '';
  const acc = await api('GET', '/v1/accounts');
  const ch = h('input', {id: 's-channel', value: channel, 'aria-label': 'Channel', size: 10});
  const ac = h('input', {id: 's-account', value: account, 'aria-label': 'Account id', list: 'accounts', size: 16,
    placeholder: 'account id'});
  const show = (ev) => { ev.preventDefault(); location.hash = 'sessions?' + new URLSearchParams({channel: ch.value, account: ac.value}); };
  const parts = [h('h1', {}, 'Sessions'),
    h('p', {class: 'muted'}, 'Key names, sizes and update times only: values are never shown here.'),
    h('form', {class: 'row', onsubmit: show}, ch, ac,
      h('datalist', {id: 'accounts'}, acc.accounts.map((a) => h('option', {value: a.accountId}))),
      h('button', {type: 'submit'}, 'Show'))];
  if (account) {
    const path = '/v1/sessions/' + enc(channel) + '/' + enc(account);
    const r = await api('GET', path + '/keys');
    parts.push(h('div', {class: 'card'}, table(['Key', 'Size (bytes)', 'Updated'],
      r.entries.map((e) => h('tr', {'data-key': e.key}, h('td', {}, h('code', {}, e.key)), h('td', {class: 'num'}, e.size),
        h('td', {}, when(e.updatedAt)))), 'No session entries for ' + channel + '/' + account + '.')));
    if (r.entries.length)
      parts.push(h('button', {type: 'button', class: 'danger', id: 'clearall', onclick: () => {
        const typed = window.prompt('This deletes the whole session of ' + channel + '/' + account +
          ' (the account must pair again). Type the account id to confirm:');
        if (typed === null) return;
        if (typed !== account) { flash('Not cleared: the typed account id does not match.', 'error'); return; }
        act(null, 'DELETE', path, undefined, route);
      }}, 'Clear all…'));
  }
  paint(gen, ...parts);
}

// ---- conversations -------------------------------------------------------------------

async function conversations(params) {
  const gen = routeGen;
  const channel = params.get('channel') || '';
  const r = await api('GET', '/v1/conversations?limit=100' + (channel ? '&channel=' + enc(channel) : ''));
  const sel = h('select', {'aria-label': 'Channel', onchange: (ev) => { location.hash = 'conversations?channel=' + enc(ev.target.value); }},
    ['', 'web', 'telegram', 'whatsapp'].map((c) => h('option', {value: c, selected: c === channel}, c || 'all channels')));
  paint(gen, h('h1', {}, 'Conversations'), h('div', {class: 'row'}, sel),
    h('div', {class: 'card'}, table(['Conversation', 'Channel', 'Account', 'Messages', 'Last message'],
      r.conversations.map((c) => h('tr', {}, h('td', {}, h('a', {href: '#conv/' + enc(c.conversationId)}, c.conversationId)),
        h('td', {}, c.channel), h('td', {}, c.accountId), h('td', {class: 'num'}, c.messages), h('td', {}, when(c.lastMessageAt)))),
      'No conversations yet.')));
}

async function conversation(id) {
  const gen = routeGen;
  const r = await api('GET', '/v1/conversations/' + enc(id) + '/messages?limit=1000');
  paint(gen, h('h1', {}, 'Conversation ' + id),
    h('div', {class: 'card'}, table(['Time', 'Dir', 'From / to', 'Text', 'Status', 'Delivery', 'Answer'],
      r.messages.map((m) => h('tr', {},
        h('td', {}, when(m.createdAt)), h('td', {}, m.direction === 'in' ? '→ in' : '← out'),
        h('td', {}, m.direction === 'in' ? (m.from || '') : (m.to || '')), h('td', {}, m.text),
        h('td', {}, status(m.status)), h('td', {}, m.delivery || (m.error ? 'error: ' + m.error : '—')),
        h('td', {}, m.reply ? h('span', {}, status(m.reply.state), m.jobId ? [' ', h('a', {href: '#job/' + m.jobId}, 'job ' + m.jobId)] : null) : '—'))),
      'No messages.')));
}

// ---- events ----------------------------------------------------------------------------

async function events(params) {
  const gen = routeGen;
  const name = params.get('event') || '';
  const fields = params.get('fields') || '';
  const nameIn = h('input', {id: 'e-name', value: name, placeholder: 'agent.job.*', 'aria-label': 'Event name filter'});
  const fieldsIn = h('input', {id: 'e-fields', value: fields, placeholder: 'accountId=default jobId=12', 'aria-label': 'Field filters'});
  const pairs = fields.split(/\s+/).filter((p) => p.includes('=')).map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]);
  let qs = '?limit=100' + (name ? '&event=' + enc(name) : '');
  for (const [k, v] of pairs) qs += '&' + enc(k) + '=' + enc(v);
  const r = await api('GET', '/v1/events' + qs);
  const body = h('tbody', {id: 'events'});
  const row = (e) => {
    const rest = Object.assign({}, e);
    for (const k of ['id', 'time', '_time', 'level', 'event']) delete rest[k];
    return h('tr', {'data-event': e.event}, h('td', {}, when(e.time)), h('td', {}, status(e.level)),
      h('td', {}, h('code', {}, e.event)), h('td', {}, h('pre', {}, JSON.stringify(rest, null, 1))));
  };
  for (const e of r.events) body.append(row(e));
  paint(gen, h('h1', {}, 'Events'),
    h('form', {class: 'row', onsubmit: (ev) => { ev.preventDefault(); location.hash = 'events?' + new URLSearchParams({event: nameIn.value, fields: fieldsIn.value}); }},
      nameIn, fieldsIn, h('button', {type: 'submit'}, 'Filter')),
    h('p', {class: 'muted'}, 'Newest first; new events appear at the top as they happen.'),
    h('div', {class: 'card'}, h('table', {}, h('thead', {}, h('tr', {}, ['Time', 'Level', 'Event', 'Fields'].map((c) => h('th', {}, c)))), body)));
  // the live tail: the stream filters by name, the fields are matched here
  return follow(name, (e) => {
    for (const [k, v] of pairs) if (String(e[k]) !== v) return;
    body.prepend(row(e));
    while (body.children.length > 500) body.lastChild.remove();
  });
}

// ---- routing -------------------------------------------------------------------------------

// Each route() is a generation; a view paints only while its generation is
// current, so a slow load or a live refresh of the page just left cannot
// overwrite the page just opened.
let routeGen = 0;
function paint(gen, ...nodes) {
  if (gen === routeGen) view.replaceChildren(...nodes);
}

async function route() {
  if (stopView) { stopView(); stopView = null; }
  const gen = ++routeGen;
  const hash = location.hash.slice(1) || 'overview';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const [name, arg] = [path.split('/')[0], decodeURIComponent(path.split('/').slice(1).join('/'))];
  for (const a of document.querySelectorAll('#nav a'))
    a.classList.toggle('on', a.getAttribute('href') === '#' + (name === 'job' ? 'jobs' : name === 'conv' ? 'conversations' : name));
  const views = {
    overview: () => overview(), jobs: () => jobs(params), job: () => job(arg), leases: () => leases(),
    sessions: () => sessions(params), conversations: () => conversations(params), conv: () => conversation(arg),
    events: () => events(params),
  };
  const fn = views[name] || views.overview;
  try {
    const stop = await fn();
    if (gen !== routeGen) {             /* left while loading */
      if (typeof stop === 'function') stop();
      return;
    }
    const live = {overview: 1, jobs: 1, job: 1, leases: 1, conv: 1};
    if (typeof stop === 'function') stopView = stop;
    else if (live[name]) {
      let busy = false;
      const stopLive = liveRefresh(async () => {
        if (busy) return;
        busy = true;
        try { await fn(); } catch (e) { flash(String(e.message || e), 'error'); }
        busy = false;
      });
      const tick = name === 'leases' ? setInterval(countdowns, 1000) : null;
      stopView = () => { stopLive(); if (tick) clearInterval(tick); };
    }
  } catch (e) {
    paint(gen, h('div', {class: 'banner error'}, 'Could not load this page: ' + (e.message || e)));
  }
}

async function main() {
  const res = await fetch('/console/api/session', {credentials: 'same-origin'});
  const s = await res.json();
  if (!s.signedIn) { location.href = '/console/login'; return; }
  csrf = s.csrf || '';
  document.getElementById('nosecret').hidden = s.secretSet;
  document.getElementById('signout').addEventListener('click', async () => {
    await fetch('/console/api/logout', {method: 'POST', credentials: 'same-origin',
      headers: {'X-CSRF-Token': csrf, 'Content-Type': 'application/json'}, body: '{}'});
    location.href = s.secretSet ? '/console/login' : '/console';
  });
  window.addEventListener('hashchange', () => { flashEl.replaceChildren(); route(); });
  route();
}

main();
