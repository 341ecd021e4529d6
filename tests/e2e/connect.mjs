// The Connect page of a key-based reauthorization in Debian's headless
// Chromium (playwright-core). Started by crates/rekey-cli/tests/browser_connect.rs
// (`connect_reauthorization_in_chromium`) with a running rekey and an Intercom
// API-key connection whose settings were set through the API: header name
// X-Intercom-Token, prefix "Token ", region api.eu.intercom.io. The test
// checks through the API afterwards that those settings were kept.
// Before that, a first connection through a key link (FIRST_URL, named
// FIRST_NAME): its page asks for the region and its result does not speak
// of data flowing "again".
// Env: BASE, SHOTS, CONNECT_URL (a reauthorization link), CONN_NAME, NEW_KEY,
// FIRST_URL, FIRST_NAME.
import { env, expect, launch, SHOTS } from './harness.mjs';

const NAME = env('CONN_NAME');

const browser = await launch();
try {
  // A reader in Tokyo: the expiry is shown in their zone, UTC on hover.
  const page = await browser.newPage({ viewport: { width: 900, height: 1000 }, timezoneId: 'Asia/Tokyo' });
  const errors = [];
  // A CSP violation (an inline script or style) shows up as a console error.
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  // A first connection.
  const FIRST = env('FIRST_NAME');
  await page.goto(env('FIRST_URL'));
  expect(await page.title() === `Connect ${FIRST} · rekey`, 'first link: titled with its display name');
  expect(!/same account|sign in|authoriz/i.test(await page.locator('main').innerText()), 'first link: no OAuth wording');
  await page.getByLabel('Intercom region').selectOption('api.intercom.io');
  await page.getByLabel('Access token').fill('first-intercom-token');
  await page.screenshot({ path: `${SHOTS}/connect-first-form.png`, fullPage: true });
  await page.getByRole('button', { name: 'Save credential' }).click();
  await page.waitForLoadState('load');
  await page.screenshot({ path: `${SHOTS}/connect-first-done.png`, fullPage: true });
  const first = await page.locator('main').innerText();
  expect(first.includes(`${FIRST} is connected`), 'first link: connected');
  expect(!/flow again/i.test(first), 'first link: no "data will flow again"');

  await page.goto(env('CONNECT_URL'));
  await page.screenshot({ path: `${SHOTS}/connect-reauth-form.png`, fullPage: true });
  expect(await page.title() === `Reconnect ${NAME} · rekey`, 'titled with the connection name');
  expect((await page.locator('h1').textContent()).trim() === `Reconnect ${NAME}`, 'heading names the connection');
  const body = await page.locator('main').innerText();
  expect(!/same account|sign in|authoriz/i.test(body), 'no OAuth wording on a key page');
  const when = await page.locator('time').getAttribute('datetime');
  const shown = (await page.locator('time').textContent()).trim();
  const title = await page.locator('time').getAttribute('title');
  expect(!Number.isNaN(Date.parse(when)) && /GMT\+9|JST/.test(shown) && /UTC$/.test(title || ''),
    `expiry in the reader's zone (${shown}), readable UTC on hover (${title})`);

  // The settings are there, prefilled; the secret is the one empty field.
  expect(await page.getByLabel('Header or parameter name').inputValue() === 'X-Intercom-Token', 'header name prefilled');
  expect(await page.getByLabel('Text before the key').inputValue() === 'Token ', 'prefix prefilled');
  expect(await page.getByLabel('Intercom region').inputValue() === 'api.eu.intercom.io', 'region prefilled');
  const secrets = page.locator('input[type=password], textarea');
  expect(await secrets.count() === 1, 'one secret field');
  expect(await page.getByLabel('Access token').inputValue() === '', 'the secret is not prefilled');
  const empty = await page.evaluate(() => [...document.querySelectorAll('form input, form select, form textarea')]
    .filter((el) => el.type !== 'password' && !el.value).map((el) => el.name));
  expect(empty.length === 0, `only the secret is asked for (empty: ${empty.join(', ')})`);

  // Submitting with the settings untouched.
  await page.getByLabel('Access token').fill(env('NEW_KEY'));
  await page.getByRole('button', { name: 'Save credential' }).click();
  await page.waitForLoadState('load');
  await page.screenshot({ path: `${SHOTS}/connect-reauth-done.png`, fullPage: true });
  const done = await page.locator('main').innerText();
  expect(done.includes('Reconnected') && done.includes(`${NAME} is reconnected`), 'reconnected');
  expect(!done.includes(env('NEW_KEY')), 'the new secret is not echoed');
  expect(errors.length === 0, `no console errors (${errors.join('; ')})`);
} finally {
  await browser.close();
}
