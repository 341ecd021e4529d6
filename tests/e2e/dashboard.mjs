// Dashboard scenarios in Debian's headless Chromium (playwright-core).
// Started by crates/rekey-cli/tests/cli.rs (`dashboard_in_chromium`) with a
// running rekey, two users and one connection whose provider answers 401.
// Env: BASE, OPERATOR, VIEWER, PASSWORD, CONN_ID, CONN_NAME, SHOTS.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
const BASE = env('BASE');
const SHOTS = env('SHOTS');
mkdirSync(SHOTS, { recursive: true });

function expect(cond, what) {
  if (!cond) throw new Error(`expected: ${what}`);
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });

  async function signIn(user) {
    await page.goto(`${BASE}/ui/integrations`);
    expect(page.url().endsWith('/ui/login'), `${user}: unauthenticated visit lands on the sign-in page`);
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(env('PASSWORD'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/ui/integrations');
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
  await page.screenshot({ path: `${SHOTS}/integrations.png`, fullPage: true });

  // Check now (the provider answers 401): the result explains it.
  await tile.getByRole('button', { name: `Check ${env('CONN_NAME')} now` }).click();
  const result = await page.getByRole('status').textContent();
  expect(result.includes('needs reauthorization'), 'check result says the grant is broken');
  await page.screenshot({ path: `${SHOTS}/check-result.png` });

  await page.goto(`${BASE}/ui/integrations?status=needs_reauth`);
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

  // Update the API key through the form, check again: data flows again.
  await page.goto(`${BASE}/ui/integrations`);
  await page.getByLabel(`More actions for ${env('CONN_NAME')}`).click();
  await page.getByRole('link', { name: 'Update credentials' }).click();
  await page.getByLabel('New API key').fill('k-new-2');
  await page.screenshot({ path: `${SHOTS}/update-key.png` });
  await page.getByRole('button', { name: 'Save new key' }).click();
  expect((await page.getByRole('status').textContent()).includes('pending'), 'the new key is saved and pending');
  expect(!(await page.content()).includes('k-new-2'), 'the new key is not echoed');
  await page.goto(`${BASE}/ui/integrations`);
  await page.locator('li.tile', { hasText: env('CONN_NAME') }).getByRole('button', { name: `Check ${env('CONN_NAME')} now` }).click();
  expect((await page.getByRole('status').textContent()).includes('Active'), 'the check with the new key is healthy');
  await page.goto(`${BASE}/ui/integrations?status=active`);
  expect(await page.locator('li.tile', { hasText: env('CONN_NAME') }).count() === 1, 'the tile is healthy again');
  await page.screenshot({ path: `${SHOTS}/healthy-again.png`, fullPage: true });

  // Keyboard: the check button is reachable with Tab.
  await page.goto(`${BASE}/ui/integrations`);
  let reached = false;
  for (let i = 0; i < 30 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent?.includes('Check now') ?? false);
  }
  expect(reached, 'Check now is reachable by keyboard');

  // The three-dot menu: open it from the keyboard, disable with confirmation.
  await page.goto(`${BASE}/ui/integrations`);
  const menu = page.getByLabel(`More actions for ${env('CONN_NAME')}`);
  await menu.focus();
  await page.keyboard.press('Enter');
  expect(await page.getByRole('link', { name: 'Disable' }).isVisible(), 'the menu opens from the keyboard');
  await page.screenshot({ path: `${SHOTS}/menu.png` });
  await page.getByRole('link', { name: 'Disable' }).click();
  expect((await page.locator('h1').textContent()).includes(`Disable ${env('CONN_NAME')}`), 'disabling asks for confirmation');
  await page.getByRole('button', { name: 'Disable' }).click();
  expect((await page.getByRole('status').textContent()).includes('is disabled'), 'the result is shown');
  await page.goto(`${BASE}/ui/integrations`);
  expect((await page.locator('li.tile', { hasText: env('CONN_NAME') }).textContent()).includes('Disabled'), 'the tile says Disabled');

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
  await page.screenshot({ path: `${SHOTS}/viewer.png`, fullPage: true });
} finally {
  await browser.close();
}
console.log('all dashboard scenarios passed');
