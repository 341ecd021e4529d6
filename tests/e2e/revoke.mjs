// Revocation from the dashboard in Chromium (playwright-core): a revoked
// connection's runbook step marked done with a ticket number, rekey's
// verification at the provider shown, "Verify now", and the evidence
// export downloaded from the connections page (saved to OUT for
// `rekey evidence verify`). Started by crates/rekey-cli/tests/browser_pages.rs
// with a running rekey, an admin user and one connection whose revocation
// waits for its runbook step (the provider already refuses the old key).
// Env: BASE, SHOTS, ADMIN, PASSWORD, CONN, OUT.
import { allLabelled, env, expect, launch, SHOTS } from './harness.mjs';
import { readFileSync } from 'node:fs';

const BASE = env('BASE');
const CONN = env('CONN');

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  await page.goto(`${BASE}/`);
  await page.getByLabel('User name').fill(env('ADMIN'));
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/ui/connections');

  await page.goto(`${BASE}/ui/connections/${CONN}`);
  const rev = page.locator('article.revocation').first();
  const badge = rev.locator('.badge');
  expect((await badge.textContent()).includes('Waiting for the runbook steps'), 'an open revocation waits for its steps');
  await allLabelled(page, 'connection page with a revocation');
  await rev.getByLabel('Note for step 1 (optional)').fill('SEC-77');
  await rev.getByRole('button', { name: 'Mark step 1 done' }).click();
  await page.getByText('the provider now refuses the old credential').waitFor({ timeout: 10000 });
  expect(true, 'marking the last step done verifies at the provider, and says so');
  await page.goto(`${BASE}/ui/connections/${CONN}`);
  const after = page.locator('article.revocation').first();
  expect((await after.locator('.badge').textContent()).includes('Verified: the provider refuses the old credential'),
    'the connection page shows the revocation verified');
  const steps = await after.locator('ol.steps').textContent();
  expect(steps.includes('SEC-77') && steps.includes('done by user:'), 'the step shows who confirmed it and the note');
  const checks = await after.locator('ul.checks').textContent();
  expect(checks.includes('rejected') && checks.includes('HTTP 401'), "the provider's answer is shown");
  await page.screenshot({ path: `${SHOTS}/revocation-verified.png`, fullPage: true });

  await after.getByRole('button', { name: 'Verify now' }).click();
  await page.getByText('revocation verified').waitFor({ timeout: 10000 });
  expect(true, 'Verify now tries again and reports the verdict');

  // The evidence export, downloaded from the connections page.
  await page.goto(`${BASE}/ui/connections`);
  const [dl] = await Promise.all([page.waitForEvent('download'), page.locator('#evidence-csv').click()]);
  expect(/^rekey-evidence-evd_[0-9a-f]{32}\.csv$/.test(dl.suggestedFilename()), `a named download (${dl.suggestedFilename()})`);
  await dl.saveAs(env('OUT'));
  const csv = readFileSync(env('OUT'), 'utf8');
  expect(csv.startsWith('# rekey evidence export,evd_'), 'the file is an evidence export');
  expect(csv.includes(CONN) && csv.includes('verified_rejected') && csv.includes('SEC-77'), 'it holds the revocation and its proof');
  expect(/\n# seal,evd_[0-9a-f]{32},sha256:[0-9a-f]{64}\n$/.test(csv), 'it ends with its seal');
  expect(errors.length === 0, `no console errors (${errors.join('; ')})`);
} finally {
  await browser.close();
}
