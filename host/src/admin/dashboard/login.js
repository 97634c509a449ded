// Signs in from a `#token=...` fragment: the fragment never leaves the browser, so the token reaches
// the scheduler only in this POST's body, never in a URL or a log.
'use strict';
(async () => {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return;
  history.replaceState(null, '', location.pathname);
  const body = new URLSearchParams({ token: decodeURIComponent(match[1]) });
  const response = await fetch('/login', { method: 'POST', body, credentials: 'same-origin' });
  if (response.ok && response.url.endsWith('/')) {
    location.replace('/');
  } else {
    document.getElementById('login-error').textContent = 'The token in the address is not this scheduler\'s.';
  }
})();
