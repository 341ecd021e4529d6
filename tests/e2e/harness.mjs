// What every browser suite here shares: required environment variables,
// the screenshot folder, a logged `expect`, Debian's headless Chromium and
// the check that every control is labelled.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};

export const SHOTS = env('SHOTS');
mkdirSync(SHOTS, { recursive: true });

export function expect(cond, what) {
  if (!cond) throw new Error(`expected: ${what}`);
  console.log(`ok - ${what}`);
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

// Every control on the page has an accessible name: a <label>, aria-label,
// or text.
export async function allLabelled(page, what) {
  const bare = await page.evaluate(() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, summary, a')]
    .filter((el) => !(el.getAttribute('aria-label')
      || (el.labels && [...el.labels].some((l) => l.textContent.trim()))
      || (['BUTTON', 'A', 'SUMMARY'].includes(el.tagName) && el.textContent.trim())))
    .map((el) => el.outerHTML.slice(0, 100)));
  if (bare.length) console.log(bare.join('\n'));
  expect(bare.length === 0, `${what}: every control is labelled`);
}
