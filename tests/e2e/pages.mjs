// Dashboard pages in Debian's headless Chromium (playwright-core): the
// connections grid at 1400px, the status summary's filter, the OAuth apps
// page (replacing a client secret) and the webhooks pages (a delivery with
// its attempts, replay, a signing secret shown once). One screenshot per page.
// Started by crates/rekey-cli/tests/browser_pages.rs with a running rekey,
// an admin user, ten connections over four providers (BROKEN of them
// broken), an OAuth app with one connection and a webhook with a delivery.
// Env: BASE, SHOTS, ADMIN, PASSWORD, HOOK_ID, BROKEN.
import { allLabelled, env, expect, launch, SHOTS } from './harness.mjs';

const BASE = env('BASE');

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.text()} [at ${page.url()}]`); });


  // The header with the user and Sign out is on the page.
  async function hasHeader(what) {
    const who = await page.locator('header .who').textContent();
    expect(who.includes(env('ADMIN')) && await page.getByRole('button', { name: 'Sign out' }).count() === 1,
      `${what}: the header shows the user and Sign out`);
  }

  await page.goto(`${BASE}/`);
  await page.getByLabel('User name').fill(env('ADMIN'));
  await page.getByLabel('Password').fill(env('PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/ui/connections');
  expect(await page.locator('h1').textContent() === 'Connections', 'signing in lands on Connections');
  await hasHeader('connections');

  // The grid: at 1400px several tiles share a row, and nothing is wider than the page.
  const boxes = await page.locator('li.tile').evaluateAll((els) => els.map((e) => {
    const r = e.getBoundingClientRect();
    return { top: Math.round(r.top), left: r.left, right: r.right };
  }));
  expect(boxes.length === 10, `ten tiles (got ${boxes.length})`);
  const perRow = {};
  for (const b of boxes) perRow[b.top] = (perRow[b.top] || 0) + 1;
  const widest = Math.max(...Object.values(perRow));
  expect(widest >= 3, `at 1400px a row holds several tiles (most in one row: ${widest})`);
  const tops = [...new Set(boxes.map((b) => b.top))];
  expect(tops.length <= 4, `ten tiles fit in a few rows (${tops.length})`);
  const pageWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(pageWidth <= 1400, `no horizontal scrolling (${pageWidth}px)`);
  // Every error message stays inside its tile.
  const spill = await page.locator('li.tile').evaluateAll((els) => els.filter((t) => {
    const e = t.querySelector('.tile-error');
    if (!e) return false;
    const a = t.getBoundingClientRect(); const b = e.getBoundingClientRect();
    return b.right > a.right + 1 || b.bottom > a.bottom + 1;
  }).length);
  expect(spill === 0, 'error messages stay inside their tiles');
  // Owner and custody on the tiles; times readable with the UTC instant on hover.
  const first = page.locator('li.tile', { hasText: 'Billing API' });
  const text = await first.textContent();
  expect(text.includes('owner0@example.com') && text.includes('vault'), 'a tile shows owner and custody');
  const time = first.locator('time');
  expect(/^20\d\d-\d\d-\d\dT/.test(await time.getAttribute('title')), 'the check time has its exact UTC time as a title');
  expect(/ago|just now/.test(await time.textContent()), 'the check time reads relative');
  // Groups sorted by display name.
  const groups = await page.locator('section.group h2').evaluateAll((hs) => hs.map((h) => h.id));
  expect(JSON.stringify(groups) === JSON.stringify(['g-custom-oauth2', 'g-custom-rest', 'g-mixpanel', 'g-segment']), `groups by display name: ${groups}`);
  // Small groups sit side by side instead of each taking a whole row.
  const groupTop = async (id) => Math.round((await page.locator(`section.group:has(#${id})`).boundingBox()).y);
  expect(await groupTop('g-mixpanel') === await groupTop('g-segment'), 'two small provider groups share a row');
  // The filters suggest the values in use.
  const tags = await page.locator('#tags-in-use option').evaluateAll((o) => o.map((x) => x.value));
  expect(tags.join(',') === 'billing,ops', `the tag filter suggests ${tags}`);
  const custody = await page.locator('#custody-in-use option').evaluateAll((o) => o.map((x) => x.value));
  expect(custody.join(',') === 'github-actions,vault', `the custody filter suggests ${custody}`);
  await allLabelled(page, 'connections');
  await page.screenshot({ path: `${SHOTS}/pages-connections-grid-1400.png`, fullPage: true });

  // The summary's "broken" count filters the page to exactly those.
  const count = page.locator('nav.summary a[data-status=needs_reauth]');
  const n = Number(await count.locator('strong').textContent());
  expect(n === Number(env('BROKEN')), `the summary counts ${n} broken`);
  await count.click();
  await page.waitForURL('**/ui/connections?status=needs_reauth');
  const shown = page.locator('li.tile');
  expect(await shown.count() === n, 'the filter shows exactly the broken ones');
  for (const t of await shown.all()) {
    expect((await t.textContent()).includes('Broken'), 'each tile shown is broken');
  }
  expect(await page.locator('#status').inputValue() === 'needs_reauth', 'the status filter shows the choice');
  await page.screenshot({ path: `${SHOTS}/pages-summary-filter.png`, fullPage: true });

  // OAuth apps: the app, the connection using it, and replacing its secret.
  await page.getByRole('link', { name: 'Integrations (OAuth apps)' }).click();
  await page.waitForURL('**/ui/integrations');
  await hasHeader('OAuth apps');
  const app = page.locator('li.app', { hasText: 'Acme OAuth app' });
  expect(await app.count() === 1, 'the OAuth app is listed');
  expect((await app.textContent()).includes('pages-client'), 'with its client id');
  expect(await app.getByRole('link', { name: 'Nightly import' }).count() === 1, 'with the connection using it');
  expect(!(await page.content()).includes('pages-secret-1'), 'the client secret is not shown');
  await allLabelled(page, 'OAuth apps');
  await page.screenshot({ path: `${SHOTS}/pages-oauth-apps.png`, fullPage: true });
  await app.getByRole('link', { name: 'Replace client secret' }).click();
  await page.getByLabel('New client secret').fill('pages-secret-2-new');
  await page.getByRole('button', { name: 'Save new secret' }).click();
  expect((await page.locator('h1').textContent()).includes('Client secret replaced'), 'the new client secret is saved');
  expect(!(await page.content()).includes('pages-secret-2-new'), 'and not echoed');
  await hasHeader('result page');

  // Webhooks: the subscription, its delivery with both attempts, a replay.
  await page.getByRole('link', { name: 'Webhooks' }).click();
  await page.waitForURL('**/ui/webhooks');
  await page.locator(`a[href="/ui/webhooks/${env('HOOK_ID')}"]`).click();
  await page.waitForURL(`**/ui/webhooks/${env('HOOK_ID')}`);
  // The delivery whose first attempt failed: both attempts are listed.
  const delivered = page.locator('li.delivery').filter({ has: page.locator('td', { hasText: /^500$/ }) });
  expect(await delivered.count() === 1, 'the retried delivery is listed');
  expect((await delivered.locator('.badge').textContent()) === 'delivered', 'as delivered');
  const attempts = await delivered.locator('table.attempts tbody tr').count();
  expect(attempts === 2, `with both attempts (${attempts})`);
  await allLabelled(page, 'webhook');
  await page.screenshot({ path: `${SHOTS}/pages-webhook-deliveries.png`, fullPage: true });
  await delivered.getByRole('button', { name: 'Replay' }).click();
  expect((await page.locator('h1').textContent()).includes('Replay queued'), 'a delivery is replayed');

  // A new signing secret is shown once, and never on the subscription's page.
  await page.goto(`${BASE}/ui/webhooks/${env('HOOK_ID')}`);
  await page.getByRole('button', { name: 'New signing secret' }).click();
  const secret = (await page.locator('#signing-secret').textContent()).trim();
  expect(secret.startsWith('whsec_'), 'the new signing secret is shown');
  await page.screenshot({ path: `${SHOTS}/pages-webhook-secret.png` });
  await page.goto(`${BASE}/ui/webhooks/${env('HOOK_ID')}`);
  expect(!(await page.content()).includes(secret.slice(6)), 'once: the subscription page does not show it');
  await page.goto(`${BASE}/ui/webhooks`);
  expect(!(await page.content()).includes(secret.slice(6)), 'nor the list');

  // A new subscription from the form: its secret shown once too.
  await page.getByLabel('Receiver URL').fill('https://hooks.example.com/rekey');
  await page.getByLabel('Description').fill('from the browser');
  await page.getByRole('button', { name: 'Add subscription' }).click();
  expect((await page.locator('h1').textContent()).includes('Webhook created'), 'a subscription is added');
  const created = (await page.locator('#signing-secret').textContent()).trim();
  await page.goto(`${BASE}/ui/webhooks`);
  expect((await page.content()).includes('from the browser') && !(await page.content()).includes(created.slice(6)),
    'it is listed, its secret not');
  await allLabelled(page, 'webhooks');
  await page.screenshot({ path: `${SHOTS}/pages-webhooks.png`, fullPage: true });
  // Every page of this suite fits a 1400px screen: no horizontal scrolling.
  for (const path of ['/ui/webhooks', `/ui/webhooks/${env('HOOK_ID')}`, '/ui/integrations', '/ui/audit']) {
    await page.goto(`${BASE}${path}`);
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(w <= 1400, `${path} fits 1400px (${w}px)`);
  }

  expect(errors.length === 0, `no console errors${errors.length ? ': ' + errors.join('; ') : ''}`);
} finally {
  await browser.close();
}
