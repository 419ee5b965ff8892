// Drives the Tag task in headless Chromium: switches superclass tabs with
// the arrow keys and the mouse, drags icons onto the image at known
// fractions, moves one, drags one off the image (removal), and writes what
// it did as JSON for the Rust test to compare with the database.
// Usage: node tag.mjs URL OUT.json
import { writeFileSync } from 'node:fs';
import { open, start, pageShown, at, drag, finish } from './common.mjs';

const [url, out] = process.argv.slice(2);
const { browser, page, errors } = await open(url);
const did = [];
try {
  await start(page, 'browser-tagger');
  // Page 1: keyboard to "person", mouse back to "animal", add a dog, move it, add a cat.
  await pageShown(page, 1);
  const photo = page.locator('#photo');
  await page.mouse.move(10, 10);
  await photo.hover();
  await page.keyboard.press('ArrowRight');
  await page.waitForSelector('#tabs .tab.active[data-superclass="person"]');
  await page.click('#tabs .tab[data-superclass="animal"]');
  await page.waitForSelector('#icons .icon[data-category="dog"]');
  let box = await photo.boundingBox();
  const chip = async (c) => (await page.locator(`#icons .icon[data-category="${c}"]`).boundingBox());
  let c = await chip('dog');
  await drag(page, { x: c.x + c.width / 2, y: c.y + c.height / 2 }, at(box, 0.25, 0.4));
  const placed = async (c) => (await page.locator(`#stage .placed[data-category="${c}"]`).boundingBox());
  let p = await placed('dog');
  await drag(page, { x: p.x + 6, y: p.y + p.height / 2 }, at(box, 0.6, 0.5));
  c = await chip('cat');
  await drag(page, { x: c.x + c.width / 2, y: c.y + c.height / 2 }, at(box, 0.8, 0.2));
  // A second dog cannot be added: its chip is marked used.
  const used = await page.locator('#icons .icon.used[data-category="dog"]').count();
  did.push({ page: 0, width: box.width, height: box.height, used,
             actions: [{ type: 'add', icon: 'dog', x: 0.25, y: 0.4 }, { type: 'move', icon: 'dog', x: 0.6, y: 0.5 },
                       { type: 'add', icon: 'cat', x: 0.8, y: 0.2 }],
             tabs: [{ superclass: 'person', keyboard: true }, { superclass: 'animal', keyboard: false }] });
  await page.click('#submit');
  // Page 2: a person added, then dragged off the image (removed); a car stays.
  await pageShown(page, 2);
  await page.keyboard.press('ArrowRight');
  await page.waitForSelector('#icons .icon[data-category="person"]');
  box = await photo.boundingBox();
  c = await chip('person');
  await drag(page, { x: c.x + c.width / 2, y: c.y + c.height / 2 }, at(box, 0.5, 0.5));
  p = await placed('person');
  await drag(page, { x: p.x + 6, y: p.y + p.height / 2 }, { x: box.x + box.width + 40, y: box.y + 10 });
  await page.keyboard.press('ArrowRight');
  await page.waitForSelector('#icons .icon[data-category="car"]');
  c = await chip('car');
  await drag(page, { x: c.x + c.width / 2, y: c.y + c.height / 2 }, at(box, 0.3, 0.7));
  did.push({ page: 1, width: box.width, height: box.height,
             actions: [{ type: 'add', icon: 'person', x: 0.5, y: 0.5 }, { type: 'remove', icon: 'person', x: 0.5, y: 0.5 },
                       { type: 'add', icon: 'car', x: 0.3, y: 0.7 }],
             tabs: [{ superclass: 'person', keyboard: true }, { superclass: 'vehicle', keyboard: true }] });
  await page.click('#submit');
  await page.waitForSelector('#complete');
  writeFileSync(out, JSON.stringify({ pages: did, errors }));
} finally {
  await finish(browser, errors);
}
