// labelscope studio: the Browse task (ImageNet style). Shows one class and a
// grid of candidate images per page; a click toggles an image's selection.
// Records per image: hover enter/leave times, the mouse trace (sampled at
// most every 16 ms, normalised to the image), every click with its position
// and time, sizes and position on the page.
(function () {
  'use strict';
  var S = window.Studio;
  var el = S.el;
  var records = [];

  function render(index, page) {
    records = [];
    var app = S.app;
    var cls = page.class || { name: '', description: '' };
    var h = el('h1');
    h.appendChild(document.createTextNode('Select every image that shows: '));
    var name = el('span', 'class-name', cls.name);
    name.id = 'class-name';
    h.appendChild(name);
    app.appendChild(h);
    var d = el('p', 'description', cls.description);
    d.id = 'class-description';
    app.appendChild(d);
    if (S.data.pointer_nudge) app.appendChild(el('p', 'instruction', 'Click on the object.'));
    app.appendChild(S.status(index));
    var grid = el('div', 'grid' + (S.data.pointer_nudge ? ' nudge' : ''));
    grid.id = 'grid';
    var draft = {};
    if (page.draft && Array.isArray(page.draft.images)) {
      page.draft.images.forEach(function (r) { if (r && typeof r.imageID === 'number') draft[r.imageID] = r; });
    }
    var lists = [];
    Object.keys(draft).forEach(function (k) {
      lists.push(draft[k].hoveredRecord, draft[k].mouseTracking, draft[k].selectedRecord);
    });
    S.resume(S.latestTime(lists, 'time'));
    var pending = page.images.length;
    var submit = S.submitButton(index);
    page.images.forEach(function (im) {
      var saved = draft[im.id];
      var kept = function (f) { return saved && Array.isArray(saved[f]) ? saved[f] : []; };
      var rec = { imageID: im.id, originalSize: { width: 1, height: 1 }, onPageSize: { width: 1, height: 1 },
                  imagePosition: { x: 0, y: 0 }, hoveredRecord: kept('hoveredRecord'),
                  mouseTracking: kept('mouseTracking'), selectedRecord: kept('selectedRecord'), selected: false };
      rec.selected = rec.selectedRecord.length % 2 === 1;
      records.push(rec);
      var cell = el('div', 'cell' + (rec.selected ? ' selected' : ''));
      cell.dataset.imageId = String(im.id);
      var img = el('img');
      img.alt = '';
      img.draggable = false;
      img.dataset.imageId = String(im.id);
      var loaded = function () {
        if (img.naturalWidth > 0) rec.originalSize = { width: img.naturalWidth, height: img.naturalHeight };
        pending--;
        if (pending === 0) submit.disabled = false;
      };
      img.addEventListener('load', loaded);
      img.addEventListener('error', loaded);
      img.addEventListener('mouseenter', function () { rec.hoveredRecord.push({ action: 'enter', time: S.now() }); S.dirty(); });
      img.addEventListener('mouseleave', function () { rec.hoveredRecord.push({ action: 'leave', time: S.now() }); S.dirty(); });
      S.track(img, rec.mouseTracking, 'time');
      img.addEventListener('click', function (ev) {
        var p = S.normalised(img, ev);
        rec.selectedRecord.push({ x: p.x, y: p.y, time: S.now() });
        rec.selected = !rec.selected;
        cell.classList.toggle('selected', rec.selected);
        S.dirty();
      });
      img.src = im.url;
      cell.appendChild(img);
      grid.appendChild(cell);
    });
    app.appendChild(grid);
    app.appendChild(submit);
  }

  function snapshot() {
    records.forEach(function (rec) {
      var img = S.app.querySelector('img[data-image-id="' + rec.imageID + '"]');
      if (!img) return;
      var p = S.position(img);
      rec.imagePosition = { x: p.x, y: p.y };
      if (p.width >= 1 && p.height >= 1) rec.onPageSize = { width: p.width, height: p.height };
    });
    return records;
  }

  S.run({
    render: render,
    payload: function () { return { images: snapshot() }; },
    draft: function () { return { images: snapshot() }; },
  });
})();
