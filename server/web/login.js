// login.js -- the console's sign-in form: POST /console/api/login, then the console
'use strict';
document.getElementById('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const msg = document.getElementById('msg');
  const input = document.getElementById('secret');
  msg.textContent = 'Signing in…';
  msg.className = 'muted';
  try {
    const res = await fetch('/console/api/login', {
      method: 'POST', credentials: 'same-origin', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({secret: input.value}),
    });
    if (res.ok) {
      location.href = '/console';
      return;
    }
    const body = await res.json().catch(() => ({}));
    msg.className = 'banner error';
    if (res.status === 429)
      msg.textContent = 'Too many failed attempts. Wait ' + (res.headers.get('Retry-After') || 'a few') +
        ' seconds and try again.';
    else if (res.status === 401)
      msg.textContent = 'Wrong secret.';
    else
      msg.textContent = (body.error && body.error.message) || ('Sign-in failed (' + res.status + ').');
    input.value = '';
    input.focus();
  } catch (e) {
    msg.className = 'banner error';
    msg.textContent = 'The server cannot be reached.';
  }
});
