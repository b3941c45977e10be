// console.mjs -- browser tests of the web console and the web chat, in
// Debian's chromium driven by playwright-core (no browser download).
//
// Run by tests/check_console.c against a real batond and a real baton-agent
// core worker:  BATON_URL=... AGENT_SECRET=... SHOTS=build/screenshots
//               PHASE=console (echo worker) | stream (slow handler worker)
// Exit 0 when every step passed; otherwise the failed step on stderr, exit 1.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const URL_ = process.env.BATON_URL;
const SECRET = process.env.AGENT_SECRET;
const SHOTS = process.env.SHOTS || 'build/screenshots';
const PHASE = process.env.PHASE || 'console';
const T = 15000;                       // generous: a shared 2-core machine

mkdirSync(SHOTS, { recursive: true });

function fail(msg) { throw new Error(msg); }
function log(msg) { process.stdout.write('[browser] ' + msg + '\n'); }

async function api(method, path, body, auth = 'Bearer ' + SECRET) {
  const res = await fetch(URL_ + path, {
    method, headers: { Authorization: auth, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function ok(method, path, body) {
  const r = await api(method, path, body);
  if (r.status >= 300) fail(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  // playwright gives every launch a fresh temporary profile (user data dir)
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

let lastPage = null;

async function shot(page, name) {
  lastPage = page;
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function consolePhase() {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await ctx.newPage();
  lastPage = page;
  page.setDefaultTimeout(T);
  const prompts = [];
  page.on('dialog', (d) => {
    if (d.type() === 'prompt') d.accept(prompts.shift() ?? '');
    else d.accept();
  });

  // -- sign-in: the console is not served before it; wrong secret refused
  await page.goto(URL_ + '/console');
  if (!page.url().endsWith('/console/login')) fail('an anonymous /console did not lead to the sign-in page');
  await page.fill('#secret', 'not-the-secret');
  await page.click('button[type=submit]');
  await page.waitForSelector('#msg.error');
  const msg = await page.textContent('#msg');
  if (!/wrong secret/i.test(msg)) fail('a wrong secret showed: ' + msg);
  await shot(page, 'login-refused');
  log('wrong secret refused');
  await page.fill('#secret', SECRET);
  await page.click('button[type=submit]');
  await page.waitForURL(URL_ + '/console');
  await page.waitForSelector('h1:text("Overview")');
  await page.waitForSelector('[data-testid=alerts]');
  await shot(page, 'overview');
  log('signed in');

  // -- a job enqueued through the API appears in the list without a reload
  await page.goto(URL_ + '/console#jobs');
  await page.waitForSelector('h1:text("Jobs")');
  const marker = await page.evaluate(() => { window.__noReload = 'kept'; return window.__noReload; });
  const { job } = await ok('POST', '/v1/jobs', { queue: 'console-test', payload: { n: 1 } });
  await page.waitForSelector(`tr[data-job="${job.id}"]`);
  if (await page.evaluate(() => window.__noReload) !== marker) fail('the jobs page reloaded');
  await shot(page, 'jobs');
  log(`job ${job.id} appeared without a reload`);

  // -- a failed job is retried from the page and its status changes
  const f = (await ok('POST', '/v1/jobs', { queue: 'console-fail', payload: { n: 2 }, maxAttempts: 1 })).job;
  const c = (await ok('POST', '/v1/jobs/claim', { queue: 'console-fail', workerId: 'w-test' })).job;
  if (c.id !== f.id) fail('claimed another job');
  await ok('POST', `/v1/jobs/${f.id}/fail`, { workerId: 'w-test', claimToken: c.claimToken,
    errorReason: 'boom', retryable: false });
  await page.goto(URL_ + '/console#job/' + f.id);
  await page.waitForSelector('td[data-field=Status] .st.failed');
  await shot(page, 'job-failed');
  await page.click('#retry');
  await page.waitForSelector('td[data-field=Status] .st.pending');
  const after = (await ok('GET', `/v1/jobs/${f.id}`)).job;
  if (after.status !== 'pending') fail('the retried job is ' + after.status);
  log(`failed job ${f.id} retried from the page`);

  // -- a lease is force-released from the page; the API shows it free
  await ok('PUT', '/v1/accounts/whatsapp/acct-1', { enabled: true });
  await ok('POST', '/v1/leases/whatsapp/acct-1/acquire', { ownerId: 'wa-test', ttlMs: 600000 });
  await page.goto(URL_ + '/console#leases');
  const row = 'tr[data-lease="whatsapp/acct-1"]';
  await page.waitForSelector(`${row} button:text("Force release")`);
  await shot(page, 'leases');
  await page.click(`${row} button:text("Force release")`);
  await page.waitForSelector('[data-testid=flash]');
  const lease = await ok('GET', '/v1/leases/whatsapp/acct-1');
  if (lease.held || lease.ownerId) fail('after force-release the lease is ' + JSON.stringify(lease));
  log('lease force-released from the page');
  // accounts are disabled from the same page (the stored config is kept)
  await page.waitForSelector(`${row} input[type=checkbox]:checked`);
  await page.click(`${row} input[type=checkbox]`);
  await page.waitForSelector(`${row} input[type=checkbox]:not(:checked)`);
  const acct = await ok('GET', '/v1/accounts/whatsapp/acct-1');
  if (acct.enabled !== false) fail('the account was not disabled: ' + JSON.stringify(acct));
  log('account disabled from the page');

  // -- session keys are listed and no value text reaches the DOM
  const secretValue = 'SESSION-VALUE-MUST-NOT-SHOW-7c1e';
  await ok('PUT', '/v1/sessions/whatsapp/acct-1/keys/creds', { value: { noiseKey: secretValue } });
  await ok('PUT', '/v1/sessions/whatsapp/acct-1/keys/pre-key-1', { value: { k: secretValue } });
  await page.goto(URL_ + '/console#sessions?channel=whatsapp&account=acct-1');
  await page.waitForSelector('tr[data-key="creds"]');
  await page.waitForSelector('tr[data-key="pre-key-1"]');
  const html = await page.content();
  if (html.includes(secretValue)) fail('a session value appears in the page');
  await shot(page, 'sessions');
  log('session keys listed without values');

  // -- the events tail shows a new event
  await page.goto(URL_ + '/console#events?event=console.test.*');
  await page.waitForSelector('h1:text("Events")');
  await page.waitForSelector('#live:text("live")');
  await ok('POST', '/v1/events', { event: 'console.test.ping', note: 'from the browser test' });
  await page.waitForSelector('tr[data-event="console.test.ping"]');
  await shot(page, 'events');
  log('events tail showed the new event');

  // -- the web chat: a visitor's message gets the echo worker's reply
  const visitor = await browser.newContext({ viewport: { width: 390, height: 760 } });
  const vp = await visitor.newPage();
  vp.setDefaultTimeout(T);
  await vp.goto(URL_ + '/chat');
  await vp.fill('#text', 'hello from a visitor');
  await vp.press('#text', 'Enter');
  await vp.waitForSelector('[data-testid=assistant]:text("echo: hello from a visitor")');
  await shot(vp, 'chat');
  log('chat: echo reply appeared');
  const saved = JSON.parse(await vp.evaluate(() => localStorage.getItem('baton.chat')));

  // -- a second visitor's token is refused on the first one's conversation
  // a second visitor: another chat opened on /chat/api/open
  const second = (await ok('POST', '/chat/api/open', {}));
  const path = `/chat/api/conversations/${saved.conversationId}/messages`;
  const theirs = await api('GET', path, undefined, 'Bearer ' + second.token);
  if (theirs.status !== 401) fail('a second visitor read the first conversation: ' + theirs.status);
  const post = await api('POST', path, { text: 'intrusion' }, 'Bearer ' + second.token);
  if (post.status !== 401) fail('a second visitor posted to the first conversation: ' + post.status);
  const mine = await api('GET', path, undefined, 'Bearer ' + saved.token);
  if (mine.status !== 200) fail('the first visitor cannot read their own conversation: ' + mine.status);
  const v1 = await api('GET', '/v1/queues', undefined, 'Bearer ' + saved.token);
  if (v1.status !== 401) fail('a visitor token opened /v1/queues: ' + v1.status);
  log('second visitor refused');

  // -- the operator sees the conversation
  await page.goto(URL_ + '/console#conversations?channel=web');
  await page.waitForSelector(`a:text("${saved.conversationId}")`);
  await shot(page, 'conversations');
  await page.goto(URL_ + '/console#conv/' + saved.conversationId);
  await page.waitForSelector('td:text("echo: hello from a visitor")');
  await shot(page, 'conversation');
  log('conversation shown in the console');

  // -- sign-out ends the session
  await page.goto(URL_ + '/console#overview');
  await page.click('#signout');
  await page.waitForURL(URL_ + '/console/login');
  await page.goto(URL_ + '/console');
  if (!page.url().endsWith('/console/login')) fail('after sign-out the console was still served');
  log('signed out');
}

async function streamPhase() {
  const visitor = await browser.newContext({ viewport: { width: 390, height: 760 } });
  const vp = await visitor.newPage();
  vp.setDefaultTimeout(T);
  await vp.goto(URL_ + '/chat');
  await vp.fill('#text', 'tell me slowly');
  await vp.press('#text', 'Enter');
  // the reply grows: a partial text first, the final one later
  await vp.waitForSelector('[data-testid=partial]:text("one")');
  const partial = await vp.textContent('[data-testid=partial]');
  if (await vp.$('[data-testid=assistant]')) fail('the final reply came before any partial text was seen');
  await shot(vp, 'chat-streaming');
  log('partial reply seen: ' + JSON.stringify(partial));
  await vp.waitForSelector('[data-testid=assistant]:text("one two three")');
  if (await vp.$('[data-testid=partial]')) fail('a partial bubble remained after the final reply');
  if (partial.includes('three')) fail('the partial text was already complete: ' + partial);
  log('final reply replaced the partial one');
}

let code = 0;
try {
  if (PHASE === 'stream') await streamPhase();
  else await consolePhase();
  log('PHASE ' + PHASE + ' passed');
} catch (e) {
  process.stderr.write('[browser] FAILED: ' + (e.stack || e) + '\n');
  if (lastPage) {
    await lastPage.screenshot({ path: `${SHOTS}/failure-${PHASE}.png`, fullPage: true }).catch(() => {});
    process.stderr.write('[browser] page text: ' + (await lastPage.innerText('body').catch(() => '?')).slice(0, 1500) + '\n');
  }
  code = 1;
}
await browser.close();
process.exit(code);
