// What every browser suite here shares: required environment variables,
// the screenshot folder, a logged `expect`, and Debian's headless Chromium.
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
