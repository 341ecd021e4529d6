// Dashboard scenarios in Debian's headless Chromium (playwright-core).
// Started by crates/rekey-cli/tests/cli.rs (`dashboard_in_chromium`) with a
// running rekey, two users, three API-key connections whose provider answers
// 401 to their stored keys (two tagged `crm`), and one OAuth connection from a
// real oidc-provider whose next token request fails with invalid_grant.
// Env: BASE, OPERATOR, VIEWER, PASSWORD, CONN_ID, CONN_NAME, OAUTH_CONN_ID,
// OAUTH_CONN_NAME, IDP (the provider's issuer URL), SHOTS.
import { allLabelled, env, expect, launch, SHOTS } from './harness.mjs';

const BASE = env('BASE');

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  // oidc-provider's dev login page imports a web font; there is no internet here.
  await page.route('https://fonts.googleapis.com/**', (r) => r.abort());
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.text()} [at ${page.url()} ${JSON.stringify(m.location())}]`); });


  async function signIn(user) {
    await page.goto(`${BASE}/ui/connections`);
    expect(page.url().endsWith('/ui/login'), `${user}: unauthenticated visit lands on the sign-in page`);
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(env('PASSWORD'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/ui/connections');
    expect(true, `${user}: signed in`);
  }

  // Wrong password: a clear error, no session.
  await page.goto(`${BASE}/ui/login`);
  await page.getByLabel('User name').fill(env('OPERATOR'));
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  expect((await page.getByRole('alert').textContent()).includes('Wrong user name or password'), 'wrong password is refused with a message');
  await page.screenshot({ path: `${SHOTS}/login.png` });

  await signIn(env('OPERATOR'));
  const tile = page.locator('li.tile', { hasText: env('CONN_NAME') });
  expect(await tile.count() === 1, 'the connection has a tile');
  expect((await tile.textContent()).includes('Pending verification'), 'a new connection is pending');
  await page.screenshot({ path: `${SHOTS}/connections.png`, fullPage: true });
  await allLabelled(page, 'connections page');

  // Check now (the provider answers 401): htmx swaps the tile in place with
  // the result on it, without leaving the page.
  await tile.getByRole('button', { name: `Check ${env('CONN_NAME')} now` }).click();
  const result = await page.locator(`#tile-${env('CONN_ID')} [role=status]`).textContent();
  expect(result.includes('needs reauthorization'), 'check result on the tile says the grant is broken');
  expect(page.url().endsWith('/ui/connections'), 'the check ran in place (htmx)');
  await page.screenshot({ path: `${SHOTS}/check-result.png` });

  await page.goto(`${BASE}/ui/connections?status=needs_reauth`);
  const broken = page.locator('li.tile', { hasText: env('CONN_NAME') });
  const text = await broken.textContent();
  expect(text.includes('Broken: needs reauthorization') && await broken.locator('svg.icon').count() === 1,
    'the tile shows the broken-chain state as an icon and in words');
  expect(text.includes('the provider rejected the credential'), 'the tile explains the error');
  expect((await broken.getAttribute('class')).includes('bad'), 'the tile is marked bad');
  await page.screenshot({ path: `${SHOTS}/broken-tile.png`, fullPage: true });

  // Clicking the tile explains the error.
  await broken.getByRole('link', { name: env('CONN_NAME') }).click();
  await page.waitForURL(`**/ui/connections/${env('CONN_ID')}`);
  const detail = await page.locator('main').textContent();
  expect(detail.includes('Last error') && detail.includes('auth_rejected') && detail.includes('HTTP 401'),
    'the connection page shows the error with its code and HTTP status');
  expect(detail.includes('Runbook: revoke'), 'the connection page shows the runbook');
  await page.screenshot({ path: `${SHOTS}/connection.png`, fullPage: true });
  await allLabelled(page, 'connection page');
  await page.getByRole('link', { name: 'Rotate' }).click();
  expect((await page.locator('h1').textContent()).includes(`Rotate ${env('CONN_NAME')}`), 'Rotate shows the rotation page');
  await allLabelled(page, 'rotate page');
  await page.goto(`${BASE}/ui/audit?target=${env('CONN_ID')}`);
  expect((await page.locator('table.audit').textContent()).includes('connection.checked'), 'the audit page lists the check');
  await allLabelled(page, 'audit page');

  // Update the API key through the form, check again: data flows again.
  await page.goto(`${BASE}/ui/connections`);
  await page.getByLabel(`More actions for ${env('CONN_NAME')}`).click();
  await page.getByRole('link', { name: 'Update credentials' }).click();
  await page.getByLabel('New API key').fill('k-new-2');
  await page.screenshot({ path: `${SHOTS}/update-key.png` });
  await page.getByRole('button', { name: 'Save new key' }).click();
  expect((await page.getByRole('status').textContent()).includes('pending'), 'the new key is saved and pending');
  expect(!(await page.content()).includes('k-new-2'), 'the new key is not echoed');
  await page.goto(`${BASE}/ui/connections`);
  await page.locator('li.tile', { hasText: env('CONN_NAME') }).getByRole('button', { name: `Check ${env('CONN_NAME')} now` }).click();
  expect((await page.locator(`#tile-${env('CONN_ID')} [role=status]`).textContent()).includes('Active'), 'the check with the new key is healthy');
  await page.goto(`${BASE}/ui/connections?status=active`);
  expect(await page.locator('li.tile', { hasText: env('CONN_NAME') }).count() === 1, 'the tile is healthy again');
  await page.screenshot({ path: `${SHOTS}/healthy-again.png`, fullPage: true });

  // Search, then bulk-check everything matching a tag filter: one result row
  // per connection.
  await page.goto(`${BASE}/ui/connections`);
  await page.getByLabel('Search', { exact: true }).fill('zeta');
  await page.getByRole('button', { name: 'Filter' }).click();
  expect(await page.locator('li.tile').count() === 1 && await page.locator('li.tile', { hasText: 'Zeta CRM' }).count() === 1,
    'search finds one connection by name');
  await page.getByLabel('Search', { exact: true }).fill('');
  await page.getByLabel('Tag', { exact: true }).fill('crm');
  await page.getByRole('button', { name: 'Filter' }).click();
  expect(await page.locator('li.tile').count() === 2 && await page.locator('li.tile', { hasText: 'Ledger' }).count() === 0,
    'the tag filter shows the two crm connections');
  await page.getByLabel('With the selected connections').selectOption('check');
  await page.getByLabel(/Apply to all 2 connections matching the filter/).check();
  await page.screenshot({ path: `${SHOTS}/bulk-select.png`, fullPage: true });
  await page.getByRole('button', { name: 'Apply' }).click();
  const rows = page.locator('table.results tbody tr');
  expect(await rows.count() === 2, 'one result row per matching connection');
  const bulkText = await page.locator('table.results').textContent();
  expect(bulkText.includes('Acme CRM') && bulkText.includes('Zeta CRM') && !bulkText.includes('Ledger'), 'the rows are the filtered set');
  expect((await rows.filter({ hasText: 'Acme CRM' }).textContent()).includes('Active'), 'Acme CRM checked healthy');
  expect((await rows.filter({ hasText: 'Zeta CRM' }).textContent()).includes('Broken: needs reauthorization'), 'Zeta CRM found broken');
  expect((await page.getByRole('status').textContent()).includes('1 done, 1 failed'), 'the summary counts both');
  await page.screenshot({ path: `${SHOTS}/bulk-result.png`, fullPage: true });

  // Picked tiles: select one by its checkbox and request reauthorization,
  // confirming the list first; the result is a Connect link for its owner.
  await page.goto(`${BASE}/ui/connections`);
  await page.getByLabel('Select Ledger').check();
  await page.getByLabel('With the selected connections').selectOption('reauthorize');
  await page.getByRole('button', { name: 'Apply' }).click();
  expect((await page.locator('h1').textContent()).includes('Request reauthorization 1 connection?'), 'bulk reauthorization asks first');
  await allLabelled(page, 'bulk confirmation page');
  await page.getByRole('button', { name: 'Request reauthorization 1 connection' }).click();
  expect((await page.locator('table.results').textContent()).includes('/connect/'), 'a Connect link per connection');

  // Keyboard: the check button is reachable with Tab.
  await page.goto(`${BASE}/ui/connections`);
  let reached = false;
  for (let i = 0; i < 45 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent?.includes('Check now') ?? false);
  }
  expect(reached, 'Check now is reachable by keyboard');

  // The three-dot menu: open it from the keyboard, disable with confirmation.
  await page.goto(`${BASE}/ui/connections`);
  const menu = page.getByLabel(`More actions for ${env('CONN_NAME')}`);
  await menu.focus();
  await page.keyboard.press('Enter');
  expect(await page.getByRole('link', { name: 'Disable' }).isVisible(), 'the menu opens from the keyboard');
  await page.screenshot({ path: `${SHOTS}/menu.png` });
  await page.getByRole('link', { name: 'Disable' }).click();
  expect((await page.locator('h1').textContent()).includes(`Disable ${env('CONN_NAME')}`), 'disabling asks for confirmation');
  await page.getByRole('button', { name: 'Disable' }).click();
  expect((await page.getByRole('status').textContent()).includes('is disabled'), 'the result is shown');
  await page.goto(`${BASE}/ui/connections`);
  expect((await page.locator('li.tile', { hasText: env('CONN_NAME') }).textContent()).includes('Disabled'), 'the tile says Disabled');

  // The OAuth grant from the real OpenID provider: Check now finds it dead
  // (invalid_grant on refresh), then Reauthorize goes through the provider's
  // own login and consent pages, and the tile turns healthy.
  const oauthTile = page.locator(`#tile-${env('OAUTH_CONN_ID')}`);
  await page.goto(`${BASE}/ui/connections`);
  await oauthTile.getByRole('button', { name: `Check ${env('OAUTH_CONN_NAME')} now` }).click();
  expect((await page.locator(`#tile-${env('OAUTH_CONN_ID')} [role=status]`).textContent()).includes('needs reauthorization'),
    'the dead OAuth grant is found broken');
  expect(await page.locator(`#tile-${env('OAUTH_CONN_ID')} svg.icon`).count() === 1, 'with the broken-chain icon');
  // As in the vendor consoles: click the broken tile, read why, "Connect new account".
  await oauthTile.getByRole('link', { name: env('OAUTH_CONN_NAME') }).click();
  expect((await page.locator('main').textContent()).includes('invalid_grant'), 'the connection page names the provider error');
  await page.getByRole('link', { name: 'Connect new account' }).click();
  expect((await page.locator('h1').textContent()).includes(`Reauthorize ${env('OAUTH_CONN_NAME')}`), 'reauthorizing asks first');
  await page.getByRole('button', { name: 'Connect new account' }).click();
  await page.waitForURL('**/connect/**');
  expect((await page.locator('h1').textContent()).includes('Reconnect'), 'the hosted Connect page opens');
  await page.screenshot({ path: `${SHOTS}/connect-page.png`, fullPage: true });
  const connectUrl = page.url();
  await page.getByRole('button', { name: 'Connect new account' }).click();
  await page.waitForURL((u) => u.href.startsWith(env('IDP')));
  await page.locator('input[name=login]').fill('alice');
  await page.locator('input[name=password]').fill('any password');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL('**/oauth/callback**');
  expect((await page.locator('main, body').first().textContent()).includes('Reconnected'), 'the provider consent brings the user back reconnected');
  await page.screenshot({ path: `${SHOTS}/reconnected.png`, fullPage: true });
  // The link was single-use: opening it again explains that, on the styled page.
  const again = await page.goto(connectUrl);
  expect(again.status() >= 400 && again.status() < 500 && (await page.locator('h1').textContent()).includes('Link already used')
    && (await page.locator('body').textContent()).includes('ask for a new one'),
    'a used Connect link says so clearly');
  expect(await page.locator('link[rel=stylesheet][href="/assets/rekey.css"]').count() === 1, 'the error page is styled like the rest');
  await page.screenshot({ path: `${SHOTS}/connect-used.png` });
  await page.goto(`${BASE}/ui/connections`);
  await oauthTile.getByRole('button', { name: `Check ${env('OAUTH_CONN_NAME')} now` }).click();
  expect((await page.locator(`#tile-${env('OAUTH_CONN_ID')} [role=status]`).textContent()).includes('Active'),
    'the reauthorized grant works (userinfo with a fresh token)');
  expect((await oauthTile.getAttribute('class')).includes('ok'), 'the tile is healthy');
  await page.screenshot({ path: `${SHOTS}/reauthorized-tile.png`, fullPage: true });

  // A POST without the CSRF token is refused, even with the session cookie
  // (the browser context's request API sends the cookies; the page's own
  // fetch is blocked by the CSP).
  const noCsrf = await page.request.post(`${BASE}/ui/connections/${env('CONN_ID')}/check`, { form: {}, maxRedirects: 0 });
  expect(noCsrf.status() === 403, 'CSRF-less POST is rejected (403)');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL('**/ui/login');
  expect(true, 'signed out');

  // A viewer sees tiles but has no actions, and a forged POST is refused.
  await signIn(env('VIEWER'));
  expect(await page.getByRole('button', { name: /Check .* now/ }).count() === 0, 'viewer has no Check now button');
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  const viewerPost = await page.request.post(`${BASE}/ui/connections/${env('CONN_ID')}/check`, { form: { csrf }, maxRedirects: 0 });
  const viewerStatus = viewerPost.status();
  expect(viewerStatus === 403, 'viewer cannot run a check (403)');
  expect(await page.getByLabel(/More actions for/).count() === 0, 'viewer has no action menu');
  const viewerRevoke = await page.request.post(`${BASE}/ui/connections/${env('CONN_ID')}/revoke`, { form: { csrf }, maxRedirects: 0 });
  expect(viewerRevoke.status() === 403, 'viewer cannot revoke (403)');
  const viewerBulk = await page.request.post(`${BASE}/ui/bulk`, { form: { csrf, action: 'revoke', confirmed: '1', id: env('CONN_ID') }, maxRedirects: 0 });
  expect(viewerBulk.status() === 403, 'viewer cannot bulk-revoke (403)');
  await page.screenshot({ path: `${SHOTS}/viewer.png`, fullPage: true });
  // Failed loads are expected (the wrong-password 401, the used link, the
  // IdP's web font); anything else (a CSP violation, a script error) is not.
  const unexpected = errors.filter((e) => !e.startsWith('Failed to load resource'));
  if (unexpected.length) console.log(unexpected.join('\n'));
  expect(unexpected.length === 0, 'no script or CSP errors in the console');
} finally {
  await browser.close();
}
console.log('all dashboard scenarios passed');
