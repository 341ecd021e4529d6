// The dashboard's Rotate action in Debian's headless Chromium: a guided
// rotation of an API key from the Rotate page, its steps updating in place
// (htmx, no page reload) while the provider answers slowly, the operator's
// confirmations as buttons (the new key in a password field), and a second
// rotation cancelled. Started by crates/rekey-cli/tests/browser_pages.rs.
// Env: BASE, SHOTS, ADMIN, PASSWORD, CONN (the connection), NEW_KEY.
import { allLabelled, env, expect, launch, SHOTS } from './harness.mjs';

const BASE = env('BASE');
const CONN = env('CONN');
const NEW_KEY = env('NEW_KEY');

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.text()} [at ${page.url()}]`); });

  const panel = page.locator('#rotation');
  const stepMark = (name) => panel.locator(`li.step[data-step=${name}] .mark`).textContent();

  await page.goto(`${BASE}/`);
  await page.getByLabel('User name').fill(env('ADMIN'));
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/ui/connections');

  // The tile's menu leads to Rotate; rekey offers a guided rotation.
  await page.goto(`${BASE}/ui/connections/${CONN}/rotate`);
  expect(await page.getByRole('heading', { name: 'Rotate with rekey' }).count() === 1, 'the Rotate page offers a rotation');
  expect((await page.content()).includes('A guided rotation'), 'a guided one, for an API key');
  await allLabelled(page, 'rotate page');
  await page.getByLabel('Keep the old credential readable for').selectOption('0');
  await page.getByRole('button', { name: 'Rotate now' }).click();
  await page.waitForURL('**/ui/rotations/rot_*');
  const rotation = page.url();
  await page.waitForSelector('#rotation[data-awaiting=set]');
  expect(await stepMark('set') === '— waiting for you', 'the set step waits for the operator');
  expect(await page.getByLabel('New API key').getAttribute('type') === 'password', 'the new key goes in a password field');
  await allLabelled(page, 'rotation waiting for set');
  await page.screenshot({ path: `${SHOTS}/rotate-waiting-for-set.png`, fullPage: true });

  // Confirm with the new key. The provider answers slowly, so the test
  // step is seen running, and the panel then moves on without a reload.
  await page.getByLabel('New API key').fill(NEW_KEY);
  await page.getByLabel(/Note for the audit log/).fill('CHG-1234');
  await page.getByRole('button', { name: 'Confirm: done at the target' }).click();
  await page.waitForURL(rotation);
  expect(await panel.getAttribute('hx-get') !== null, 'the panel refreshes itself while a step runs');
  await page.evaluate(() => { window.notReloaded = true; });
  await page.waitForSelector('#rotation[data-awaiting=retired]', { timeout: 30000 });
  expect(await page.evaluate(() => window.notReloaded === true), 'the steps updated in place (no page reload)');
  expect(await stepMark('promoted') === '— done', 'the new key is current');
  expect(await panel.getAttribute('hx-get') === null, 'and it stops refreshing while it waits for the operator');
  expect(!(await page.content()).includes(NEW_KEY), 'the new key is never shown');
  await page.screenshot({ path: `${SHOTS}/rotate-waiting-for-retired.png`, fullPage: true });
  await page.getByRole('button', { name: 'Confirm: old credential removed' }).click();
  await page.waitForURL(rotation);
  await page.waitForSelector('#rotation[data-state=retired]', { timeout: 20000 });
  const marks = await panel.locator('li.step .mark').allTextContents();
  expect(marks.length === 5 && marks.every((m) => m === '— done'), `every step done (${marks})`);
  const confirmations = await panel.locator('h2:has-text("Confirmations") + ul li').allTextContents();
  expect(confirmations.length === 2 && confirmations[0].includes('CHG-1234'), `both confirmations listed (${confirmations})`);
  await page.screenshot({ path: `${SHOTS}/rotate-done.png`, fullPage: true });

  // A second rotation, cancelled before anything changed.
  await page.goto(`${BASE}/ui/connections/${CONN}/rotate`);
  await page.getByRole('button', { name: 'Rotate now' }).click();
  await page.waitForSelector('#rotation[data-awaiting=set]');
  // While it runs, the Rotate page points to it instead of starting another.
  const second = page.url();
  await page.goto(`${BASE}/ui/connections/${CONN}/rotate`);
  expect(await page.getByRole('link', { name: 'Follow it' }).count() === 1, 'the Rotate page points to the rotation under way');
  await page.goto(second);
  await page.getByRole('button', { name: 'Cancel rotation' }).click();
  await page.waitForSelector('#rotation[data-state=rolled_back]');
  expect(await page.getByRole('button', { name: /Confirm/ }).count() === 0, 'a cancelled rotation asks nothing more');

  // The audit log has the confirmations.
  await page.goto(`${BASE}/ui/audit`);
  const audit = await page.content();
  expect(audit.includes('rotation.confirm') && audit.includes('rotation.cancel'), 'the audit log shows the confirmations and the cancel');
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(w <= 1400, `the audit page fits 1400px (${w}px)`);

  expect(errors.length === 0, `no console errors${errors.length ? ': ' + errors.join('; ') : ''}`);
} finally {
  await browser.close();
}
