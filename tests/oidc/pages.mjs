// The provider's pages, plain and self-contained (no external fonts or
// scripts): the login form, sign-out, and errors.

const ESCAPES = {
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
};

/** `text` made safe to put in HTML. */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (char) => ESCAPES[char]);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`;
}

/** The login form of interaction `uid`, with an error message after a failed attempt. */
export function loginPage({ uid, clientId, error, username }) {
  const alert = error ? `<p role="alert">${escapeHtml(error)}</p>\n` : '';
  return page('Sign in to the test provider', `<p>Client: ${escapeHtml(clientId)}</p>
${alert}<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label for="username">Username</label>
  <input id="username" name="username" type="text" required autofocus value="${escapeHtml(username ?? '')}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <button type="submit">Sign in</button>
</form>`);
}

/** The pages oidc-provider renders itself (see its `renderError` and `rpInitiatedLogout`). */
export const pages = {
  // Sign-out needs no confirmation in tests: the form (with its CSRF token)
  // submits itself; the button is there for a browser without scripts.
  async logout(ctx, form) {
    ctx.type = 'html';
    ctx.body = page('Sign out', `${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>
<script>
  const form = document.getElementById('op.logoutForm');
  const yes = document.createElement('input');
  yes.type = 'hidden'; yes.name = 'logout'; yes.value = 'yes';
  form.appendChild(yes);
  form.submit();
</script>`);
  },
  async loggedOut(ctx) {
    ctx.type = 'html';
    ctx.body = page('Signed out', '<p>You are signed out of the test provider.</p>');
  },
  async error(ctx, out) {
    ctx.type = 'html';
    const details = Object.entries(out)
      .map(([key, value]) => `<dt>${escapeHtml(key)}</dt><dd>${escapeHtml(value)}</dd>`).join('');
    ctx.body = page('Error', `<dl>${details}</dl>`);
  },
};
