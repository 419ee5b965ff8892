// Drives the Label task in headless Chromium: searches a class by typing,
// picks it, changes the choice; on page 1 also ticks the escape hatch and
// picks an alternative. Writes what it did as JSON for the Rust test to
// compare with the exported answers files.
// Usage: node label.mjs URL OUT.json
import { writeFileSync } from 'node:fs';
import { open, start, pageShown, at, finish } from './common.mjs';

const [url, out] = process.argv.slice(2);
const { browser, page, errors } = await open(url);
const did = [];
try {
  await start(page, 'browser-labeler');
  // Types `query` into the picker of `target` and clicks the result `wnid`.
  const pick = async (target, query, wnid) => {
    await page.fill(`#${target}-query`, query);
    const b = `#${target}-results button[data-wnid="${wnid}"]`;
    await page.waitForSelector(b);
    await page.click(b);
  };
  await pageShown(page, 1, false);
  const box = await page.locator('#photo').boundingBox();
  await page.mouse.move(box.x - 5, box.y + 5);
  await page.mouse.move(at(box, 0.5, 0.5).x, at(box, 0.5, 0.5).y, { steps: 10 });
  const early = await page.locator('#submit').isDisabled();
  await pick('label', 'tabby', 'n02123045');
  await pick('label', 'chihua', 'n02085620');
  await page.check('#escape');
  // Escape hatch ticked without an alternative: submit waits.
  const waits = await page.locator('#submit').isDisabled();
  await pick('alternative', 'tabby', 'n02123045');
  await pageShown(page, 1);
  did.push({ page: 0, early, waits, label: 'n02085620', alternative: 'n02123045', choices: 3 });
  await page.click('#submit');
  await pageShown(page, 2, false);
  await pick('label', 'tench', 'n01440764');
  await pageShown(page, 2);
  did.push({ page: 1, early: true, waits: true, label: 'n01440764', alternative: '', choices: 1 });
  await page.click('#submit');
  await page.waitForSelector('#complete');
  writeFileSync(out, JSON.stringify({ pages: did, errors }));
} finally {
  await finish(browser, errors);
}
