// An incident campaign on the dashboard in Debian's headless Chromium:
// started from a filtered connections view, its plan shown as a table to
// confirm, started, its progress and connection list updating in place
// (htmx, no reload) while the workers run it, an operator's confirmation
// and a skip (with comment and reason), the campaign completing, and its
// evidence downloaded (saved to OUT for `rekey evidence verify`). Started
// by crates/rekey-cli/tests/browser_pages.rs.
// Env: BASE, SHOTS, ADMIN, PASSWORD, TAG (the affected connections' tag),
// CONFIRM, SKIP (connection ids), OUT.
import { readFileSync } from 'node:fs';
import { allLabelled, env, expect, launch, SHOTS } from './harness.mjs';

const BASE = env('BASE');
const TAG = env('TAG');
const CONFIRM = env('CONFIRM').split(',');
const SKIP = env('SKIP');

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.text()} [at ${page.url()}]`); });

  await page.goto(`${BASE}/`);
  await page.getByLabel('User name').fill(env('ADMIN'));
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/ui/connections');
  expect(await page.locator('#start-campaign').count() === 0, 'no campaign offered without a filter');

  // The affected connections, filtered by tag: start a campaign for them.
  await page.goto(`${BASE}/ui/connections?tag=${encodeURIComponent(TAG)}`);
  await page.getByRole('link', { name: 'Start incident campaign' }).click();
  await page.waitForURL('**/ui/campaigns/new?*');
  expect((await page.locator('dl.facts').textContent()).includes(TAG), 'the form shows the filter');
  await allLabelled(page, 'new campaign');
  // A deadline in the past is refused, with the form kept.
  await page.getByLabel('Name').fill('Vendor breach');
  await page.getByLabel(/Reason/).fill('The vendor reported stolen OAuth tokens.\nTicket SEC-101.');
  await page.locator('#deadline').evaluate((el) => { el.removeAttribute('min'); el.value = '2020-01-01'; });
  await page.getByRole('button', { name: 'Plan the campaign' }).click();
  await page.locator('.alert.bad').waitFor();
  expect((await page.locator('.alert.bad').textContent()).includes('deadline'), 'a past deadline is refused clearly');
  expect(await page.getByLabel('Name').inputValue() === 'Vendor breach', 'and the form keeps what was typed');
  // The refusal's 400 is the one failed load the console may show.
  errors.length = 0;
  const later = new Date(Date.now() + 7 * 86400000).toISOString().slice(0, 10);
  await page.locator('#deadline').fill(later);
  await page.getByRole('button', { name: 'Plan the campaign' }).click();
  await page.waitForURL(/\/ui\/campaigns\/cmp_[0-9a-f]+$/);
  const campaign = page.url();

  // The draft: the plan as a table, nothing done yet.
  const rows = page.locator('table.plan tbody tr');
  expect(await rows.count() === 3, 'the plan lists the three connections');
  expect((await rows.first().textContent()).includes('rotate'), 'each with its steps');
  expect((await page.textContent('main')).includes('Nothing has happened yet'), 'nothing happened yet');
  await allLabelled(page, 'campaign plan');
  await page.screenshot({ path: `${SHOTS}/campaign-plan.png`, fullPage: true });
  await page.getByRole('button', { name: 'Start the campaign' }).click();
  await page.waitForURL(campaign);

  // Running: the live part refreshes itself until each connection waits
  // for an operator (the rotations are guided).
  const live = page.locator('#campaign-live');
  expect(await live.getAttribute('hx-get') !== null, 'the progress refreshes itself while it runs');
  await page.evaluate(() => { window.notReloaded = true; });
  await page.waitForFunction(() => document.querySelectorAll('table.items tr[data-state=waiting_for_operator]').length === 3, null, { timeout: 60000 });
  expect(await page.evaluate(() => window.notReloaded === true), 'the list updated in place (no page reload)');
  expect(await page.locator('tr[data-state=waiting_for_operator] progress').count() === 1, 'a bar per state');
  await allLabelled(page, 'running campaign');
  await page.screenshot({ path: `${SHOTS}/campaign-running.png`, fullPage: true });

  // The operator confirms two connections by hand and skips one.
  for (const id of CONFIRM) {
    await page.goto(`${campaign}/items/${id}`);
    await allLabelled(page, 'campaign connection');
    await page.getByLabel(/Comment/).fill(`Checked by hand, SEC-101 (${id})`);
    await page.getByRole('button', { name: 'Confirm: done' }).click();
    await page.waitForSelector('#campaign-item[data-state=done]');
  }
  await page.goto(`${campaign}/items/${SKIP}`);
  await page.getByRole('button', { name: 'Skip this connection' }).click();
  expect(await page.locator('#campaign-item[data-state=waiting_for_operator]').count() === 1, 'a skip needs its reason (the form does not go)');
  await page.getByLabel('Reason').fill('Decommissioned last week');
  await page.getByRole('button', { name: 'Skip this connection' }).click();
  await page.waitForSelector('#campaign-item[data-state=skipped]');
  expect((await page.textContent('#campaign-item')).includes('Decommissioned last week'), 'the reason is shown');

  // Completed: counts, no more refreshing, the evidence.
  await page.goto(campaign);
  await page.waitForSelector('#campaign-live[data-state=completed]');
  expect(await live.getAttribute('hx-get') === null, 'a finished campaign stops refreshing');
  expect((await page.locator('#campaign-done').textContent()).trim() === '66.7', 'two of three done');
  expect(await page.locator('tr[data-state=skipped] td.n').textContent() === '1', 'one skipped');
  await page.screenshot({ path: `${SHOTS}/campaign-completed.png`, fullPage: true });
  const [dl] = await Promise.all([page.waitForEvent('download'), page.locator('#campaign-evidence-csv').click()]);
  await dl.saveAs(env('OUT'));
  const csv = readFileSync(env('OUT'), 'utf8');
  expect(csv.startsWith('# rekey evidence export,evd_'), 'the download is an evidence export');
  expect(csv.includes('Vendor breach') && csv.includes('Decommissioned last week'), 'with the campaign and its timeline');

  // The list of campaigns shows it.
  await page.goto(`${BASE}/ui/campaigns`);
  expect((await page.locator('tr[data-state=completed]').textContent()).includes('Vendor breach'), 'the campaigns page lists it');
  expect(errors.length === 0, `no console errors (${errors.join('; ')})`);
} finally {
  await browser.close();
}
