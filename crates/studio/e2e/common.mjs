// Shared set-up of the browser tests: a headless Chromium page that fails
// the run on any page error or console error.
import { chromium } from 'playwright-core';

export async function open(url) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url);
  return { browser, page, errors };
}

// Enters a worker id and starts the HIT.
export async function start(page, worker) {
  await page.fill('#worker', worker);
  await page.click('#start');
}

// Waits until page n (1-based) is shown and its submit button is enabled
// (or, with `enabled` false, just shown).
export async function pageShown(page, n, enabled = true) {
  await page.waitForFunction(([n, enabled]) => {
    const s = document.getElementById('page-status');
    const b = document.getElementById('submit');
    return s && s.textContent.startsWith('Page ' + n + ' of') && b && (!enabled || !b.disabled);
  }, [n, enabled]);
}

// The page point at fraction (fx, fy) of a box.
export function at(box, fx, fy) {
  return { x: box.x + fx * box.width, y: box.y + fy * box.height };
}

// Press at `from`, move to `to` in steps, release.
export async function drag(page, from, to, steps = 10) {
  await page.mouse.move(from.x, from.y);
  await page.mouse.down();
  await page.mouse.move(to.x, to.y, { steps });
  await page.mouse.up();
}

export async function finish(browser, errors) {
  await browser.close();
  if (errors.length) {
    console.error(errors.join('\n'));
    process.exit(1);
  }
}
