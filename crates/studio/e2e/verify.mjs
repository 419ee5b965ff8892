// Drives the Verify task in headless Chromium: answers each proposed label
// (changing one answer), flags a problem, types an alternative label, and
// writes what it did as JSON for the Rust test to compare with the database.
// Usage: node verify.mjs URL OUT.json
import { writeFileSync } from 'node:fs';
import { open, start, pageShown, at, finish } from './common.mjs';

const [url, out] = process.argv.slice(2);
const { browser, page, errors } = await open(url);
const did = [];
try {
  await start(page, 'browser-verifier');
  const answer = (label, a) => page.click(`button.answer[data-label="${label}"][data-answer="${a}"]`);
  await pageShown(page, 1, false);
  const labels = await page.locator('#proposed li').evaluateAll((l) => l.map((x) => x.dataset.label));
  // Not every label answered yet: submit stays disabled.
  const box = await page.locator('#photo').boundingBox();
  await page.mouse.move(box.x - 5, box.y + 5);
  await page.mouse.move(at(box, 0.5, 0.5).x, at(box, 0.5, 0.5).y, { steps: 10 });
  await answer(labels[0], 'maybe');
  const early = await page.locator('#submit').isDisabled();
  await answer(labels[0], 'yes');
  await answer(labels[1], 'no');
  await page.check('#flag-drawing');
  await page.fill('#alternative', 'toy dog');
  await pageShown(page, 1);
  did.push({ page: 0, early, answers: [[labels[0], 'yes'], [labels[1], 'no']], clicks: 3, flags: ['drawing'],
             alternative: 'toy dog' });
  await page.click('#submit');
  await pageShown(page, 2, false);
  await answer(labels[0], 'yes');
  await answer(labels[1], 'maybe');
  await pageShown(page, 2);
  did.push({ page: 1, early: true, answers: [[labels[0], 'yes'], [labels[1], 'maybe']], clicks: 2, flags: [],
             alternative: '' });
  await page.click('#submit');
  await page.waitForSelector('#complete');
  writeFileSync(out, JSON.stringify({ pages: did, labels, errors }));
} finally {
  await finish(browser, errors);
}
