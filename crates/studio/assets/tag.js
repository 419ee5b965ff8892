// labelscope studio: the Tag task (COCO style). One image per page; the
// annotator opens a superclass tab (click, or the left / right arrow keys),
// drags a category's icon onto an object, and can move an icon (drag it on
// the image), remove it (drag it off the image, or its x button). One icon
// per category per image. Records actionHistories (actionType, iconType,
// pointFrom / pointTo normalised to the image, timeAt), categoryHistories
// (superclass, timeAt, keyboard), the mouse trace over the image and the
// time spent.
(function () {
  'use strict';
  var S = window.Studio;
  var el = S.el;
  var cats = S.data.categories || [];
  var supers = [];
  cats.forEach(function (c) { if (supers.indexOf(c.superclass) < 0) supers.push(c.superclass); });
  var rec = null;
  var icons = {};      // category -> {x, y, node}
  var img = null, stage = null, bar = null, tabs = null, current = 0, drag = null;

  function openTab(k, keyboard) {
    current = (k + supers.length) % supers.length;
    rec.categoryHistories.push({ superclass: supers[current], timeAt: S.now(), keyboard: keyboard });
    S.dirty();
    showTab();
  }

  function showTab() {
    Array.prototype.forEach.call(tabs.children, function (t, k) {
      t.classList.toggle('active', k === current);
      t.setAttribute('aria-selected', k === current ? 'true' : 'false');
    });
    while (bar.firstChild) bar.removeChild(bar.firstChild);
    cats.filter(function (c) { return c.superclass === supers[current]; }).forEach(function (c) {
      var chip = el('span', 'icon' + (icons[c.name] ? ' used' : ''), c.name);
      chip.dataset.category = c.name;
      chip.addEventListener('mousedown', function (ev) {
        if (icons[c.name]) return;
        ev.preventDefault();
        startDrag(c.name, null, ev);
      });
      bar.appendChild(chip);
    });
  }

  function inside(ev) {
    var r = img.getBoundingClientRect();
    return ev.clientX >= r.left && ev.clientX <= r.right && ev.clientY >= r.top && ev.clientY <= r.bottom;
  }

  function startDrag(category, from, ev) {
    var ghost = el('span', 'icon ghost', category);
    document.body.appendChild(ghost);
    drag = { category: category, from: from, ghost: ghost };
    moveGhost(ev);
  }

  function moveGhost(ev) {
    if (!drag) return;
    drag.ghost.style.left = (ev.clientX + window.scrollX - 6) + 'px';
    drag.ghost.style.top = (ev.clientY + window.scrollY - 6) + 'px';
  }

  function place(category, p) {
    var node = icons[category] && icons[category].node;
    if (!node) {
      node = el('span', 'placed', category);
      node.dataset.category = category;
      var x = el('button', 'remove', '\u00d7');
      x.type = 'button';
      x.title = 'Remove';
      x.addEventListener('mousedown', function (ev) { ev.stopPropagation(); });
      x.addEventListener('click', function () { remove(category); });
      node.appendChild(x);
      node.addEventListener('mousedown', function (ev) {
        if (ev.target !== node) return;
        ev.preventDefault();
        var at = icons[category];
        startDrag(category, { x: at.x, y: at.y }, ev);
      });
      stage.appendChild(node);
    }
    node.style.left = (p.x * 100) + '%';
    node.style.top = (p.y * 100) + '%';
    icons[category] = { x: p.x, y: p.y, node: node };
  }

  function remove(category) {
    var at = icons[category];
    if (!at) return;
    rec.actionHistories.push({ actionType: 'remove', iconType: category, pointFrom: { x: at.x, y: at.y }, timeAt: S.now() });
    stage.removeChild(at.node);
    delete icons[category];
    S.dirty();
    showTab();
  }

  document.addEventListener('mousemove', moveGhost);
  document.addEventListener('mouseup', function (ev) {
    if (!drag) return;
    var d = drag;
    drag = null;
    document.body.removeChild(d.ghost);
    if (inside(ev)) {
      var p = S.normalised(img, ev);
      var a = { actionType: d.from ? 'move' : 'add', iconType: d.category, pointTo: p, timeAt: S.now() };
      if (d.from) a.pointFrom = d.from;
      rec.actionHistories.push(a);
      place(d.category, p);
      S.dirty();
      showTab();
    } else if (d.from) {
      remove(d.category);
    }
  });
  document.addEventListener('keydown', function (ev) {
    if (!rec || !tabs) return;
    if (ev.key === 'ArrowRight') { ev.preventDefault(); openTab(current + 1, true); }
    else if (ev.key === 'ArrowLeft') { ev.preventDefault(); openTab(current - 1, true); }
  });

  function render(index, page) {
    var app = S.app;
    icons = {};
    current = 0;
    var saved = page.draft && typeof page.draft === 'object' ? page.draft : {};
    var kept = function (f) { return Array.isArray(saved[f]) ? saved[f] : []; };
    rec = { actionHistories: kept('actionHistories'), categoryHistories: kept('categoryHistories'),
            mouseTracking: kept('mouseTracking') };
    S.resume(S.latestTime([rec.actionHistories, rec.categoryHistories, rec.mouseTracking], 'timeAt'));
    app.appendChild(el('h1', null, 'Put an icon on one object of every category you see'));
    app.appendChild(el('p', 'description', 'Drag icons onto the image; drag a placed icon to move it, or off the image to remove it. Left and right arrow keys switch the tabs.'));
    app.appendChild(S.status(index));
    tabs = el('div', 'tabs');
    tabs.id = 'tabs';
    tabs.setAttribute('role', 'tablist');
    supers.forEach(function (s, k) {
      var t = el('button', 'tab', s);
      t.type = 'button';
      t.dataset.superclass = s;
      t.setAttribute('role', 'tab');
      t.addEventListener('click', function () { openTab(k, false); });
      tabs.appendChild(t);
    });
    app.appendChild(tabs);
    bar = el('div', 'iconbar');
    bar.id = 'icons';
    app.appendChild(bar);
    stage = el('div', 'stage');
    stage.id = 'stage';
    img = S.photo(page);
    stage.appendChild(img);
    app.appendChild(stage);
    S.track(img, rec.mouseTracking, 'timeAt');
    var submit = S.submitButton(index);
    var ready = function () { submit.disabled = false; };
    img.loaded.then(ready);
    // Replay a restored draft to put its icons back.
    rec.actionHistories.forEach(function (a) {
      if (a.actionType === 'remove') {
        if (icons[a.iconType]) { stage.removeChild(icons[a.iconType].node); delete icons[a.iconType]; }
      } else if (a.pointTo) {
        place(a.iconType, a.pointTo);
      }
    });
    app.appendChild(submit);
    showTab();
  }

  function payload() {
    var f = S.imageFields(img);
    return { imageID: Number(img.dataset.imageId), originalSize: f.originalSize, onPageSize: f.onPageSize,
             imagePosition: f.imagePosition, timeSpent: Math.round(S.now()), actionHistories: rec.actionHistories,
             categoryHistories: rec.categoryHistories, mouseTracking: rec.mouseTracking };
  }

  S.run({
    render: render,
    payload: payload,
    draft: function () { return { actionHistories: rec.actionHistories, categoryHistories: rec.categoryHistories,
                                  mouseTracking: rec.mouseTracking }; },
  });
})();
