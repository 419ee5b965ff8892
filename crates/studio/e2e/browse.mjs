// Drives the Browse task in headless Chromium: enters a worker id, moves
// over and clicks images at known positions on every page, submits, and
// writes what it did (image, normalised click position, clicks) as JSON for
// the Rust test to compare with the database.
// Usage: node browse.mjs URL PAGES OUT.json
import { writeFileSync } from 'node:fs';
import { open, start, finish } from './common.mjs';

const [url, pagesArg, out] = process.argv.slice(2);
const pages = Number(pagesArg);
const { browser, page, errors } = await open(url);
try {
  await start(page, 'browser-worker-1');
  const done = [];
  let nudge = null;
  for (let p = 0; p < pages; p++) {
    await page.waitForFunction((n) => {
      const s = document.getElementById('page-status');
      const b = document.getElementById('submit');
      return s && s.textContent.startsWith('Page ' + n + ' of') && b && !b.disabled;
    }, p + 1);
    if (nudge === null) nudge = await page.locator('.instruction').count() > 0;
    const imgs = page.locator('#grid img');
    const n = await imgs.count();
    for (let k = 0; k < n; k++) {
      const img = imgs.nth(k);
      const id = Number(await img.getAttribute('data-image-id'));
      const box = await img.boundingBox();
      // Enter from the left edge, then travel to the target.
      await page.mouse.move(box.x - 5, box.y + box.height / 2);
      let fx = 0.25, fy = 0.75, clicks = 0;
      if (k % 3 === 0) clicks = 1;
      else if (k % 3 === 1) { clicks = 2; fx = 0.5; fy = 0.5; }
      const tx = box.x + fx * box.width, ty = box.y + fy * box.height;
      await page.mouse.move(tx, ty, { steps: 12 });
      for (let c = 0; c < clicks; c++) {
        await page.mouse.click(tx, ty);
        await page.waitForTimeout(30);
      }
      await page.mouse.move(box.x + box.width + 5, ty, { steps: 3 });
      done.push({ page: p, imageID: id, x: fx, y: fy, clicks, width: box.width, height: box.height });
    }
    await page.click('#submit');
  }
  await page.waitForSelector('#complete');
  writeFileSync(out, JSON.stringify({ images: done, nudge, errors }));
} finally {
  await finish(browser, errors);
}
