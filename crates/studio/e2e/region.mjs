// Drives the Region task in headless Chromium: draws boxes between known
// fractions of the image, searches a class by name, picks a suggestion
// (or, with a model, takes the model's first suggestion), cancels one box,
// and writes what it did as JSON for the Rust test.
// Usage: node region.mjs URL OUT.json QUERY
import { writeFileSync } from 'node:fs';
import { open, start, pageShown, at, drag, finish } from './common.mjs';

const [url, out, query] = process.argv.slice(2);
const { browser, page, errors } = await open(url);
const did = [];
try {
  await start(page, 'browser-boxer');
  await pageShown(page, 1);
  const box = await page.locator('#photo').boundingBox();
  // A box that is cancelled, then one that is labelled.
  await drag(page, at(box, 0.6, 0.6), at(box, 0.9, 0.9));
  await page.waitForSelector('#label-panel:not([hidden])');
  await page.click('#cancel-box');
  await drag(page, at(box, 0.1, 0.2), at(box, 0.5, 0.7), 12);
  await page.waitForSelector('#label-panel:not([hidden])');
  const model = await page.evaluate(() => window.Studio.data.model);
  if (query) {
    await page.fill('#region-query', query);
  }
  await page.waitForSelector('#suggestions button.suggestion');
  const first = await page.locator('#suggestions button.suggestion').first();
  const wnid = await first.getAttribute('data-wnid');
  const source = await page.evaluate(() => document.getElementById('suggestions-ready').textContent);
  await first.click();
  await page.waitForSelector('#regions li');
  did.push({ page: 0, width: box.width, height: box.height, box: [0.1, 0.2, 0.5, 0.7], wnid, query: query || '',
             model, source });
  await page.click('#submit');
  await page.waitForSelector('#complete');
  writeFileSync(out, JSON.stringify({ pages: did, errors }));
} finally {
  await finish(browser, errors);
}
