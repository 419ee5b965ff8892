// labelscope studio: the Region task. One image per page; the annotator
// draws a box (press, drag, release), then picks its class from ranked
// suggestions: the server's region model when it has one (asked with the
// box), otherwise a search over class names (asked with what is typed).
// Records per region: the box (normalised to the image), the label, the
// query typed, the suggestions shown and their source, the drawing trace
// (sampled at most every 16 ms) and the time; plus the mouse trace.
(function () {
  'use strict';
  var S = window.Studio;
  var el = S.el;
  var rec = null, img = null, stage = null, panel = null, list = null, drawing = null, pending = null;
  var index = 0, lastSample = -Infinity, searchTimer = null, seq = 0;

  function clampBox(a, b) {
    return { x0: Math.min(a.x, b.x), y0: Math.min(a.y, b.y), x1: Math.max(a.x, b.x), y1: Math.max(a.y, b.y) };
  }

  function drawBox(node, b) {
    node.style.left = (b.x0 * 100) + '%';
    node.style.top = (b.y0 * 100) + '%';
    node.style.width = ((b.x1 - b.x0) * 100) + '%';
    node.style.height = ((b.y1 - b.y0) * 100) + '%';
  }

  function showRegions() {
    Array.prototype.forEach.call(stage.querySelectorAll('.region.done'), function (n) { stage.removeChild(n); });
    while (list.firstChild) list.removeChild(list.firstChild);
    rec.regions.forEach(function (r, k) {
      var n = el('div', 'region done');
      drawBox(n, r.box);
      n.appendChild(el('span', 'region-label', r.name || r.label));
      stage.appendChild(n);
      var li = el('li', null, (r.name || r.label) + ' ');
      var x = el('button', 'remove', '\u00d7');
      x.type = 'button';
      x.title = 'Remove';
      x.addEventListener('click', function () { rec.regions.splice(k, 1); S.dirty(); showRegions(); });
      li.appendChild(x);
      list.appendChild(li);
    });
  }

  function suggest(q) {
    var b = pending.box;
    var url = S.base() + '/suggest/' + index + '?' + S.auth();
    if (q) url += '&q=' + encodeURIComponent(q);
    else url += '&x0=' + b.x0 + '&y0=' + b.y0 + '&x1=' + b.x1 + '&y1=' + b.y1;
    var mine = ++seq;
    S.api('GET', url).then(function (r) {
      if (mine !== seq || !pending) return;
      pending.source = r.source;
      pending.suggestions = r.suggestions.map(function (s) { return s.wnid; });
      var box = document.getElementById('suggestions');
      while (box.firstChild) box.removeChild(box.firstChild);
      r.suggestions.forEach(function (s) {
        var b = el('button', 'suggestion', s.name);
        b.type = 'button';
        b.dataset.wnid = s.wnid;
        b.addEventListener('click', function () { choose(s); });
        box.appendChild(b);
      });
      var ready = document.getElementById('suggestions-ready');
      ready.textContent = r.suggestions.length + ' suggestion(s) from ' + (r.source === 'model' ? 'the model' : 'the class names');
    }).catch(function (e) { S.showError('Could not get suggestions: ' + e.message); });
  }

  function openPanel() {
    panel.hidden = false;
    var q = document.getElementById('region-query');
    q.value = '';
    document.getElementById('suggestions-ready').textContent = '';
    var box = document.getElementById('suggestions');
    while (box.firstChild) box.removeChild(box.firstChild);
    if (S.data.model) suggest('');
    q.focus();
  }

  function closePanel() {
    panel.hidden = true;
    var n = stage.querySelector('.region.pending');
    if (n) stage.removeChild(n);
    pending = null;
  }

  function choose(s) {
    if (!pending) return;
    rec.regions.push({ box: pending.box, label: s.wnid, name: s.name,
                       query: document.getElementById('region-query').value.trim(), source: pending.source || 'search',
                       suggestions: pending.suggestions || [], drawTrace: pending.trace, time: S.now() });
    S.dirty();
    closePanel();
    showRegions();
  }

  function render(i, page) {
    var app = S.app;
    index = i;
    pending = null;
    drawing = null;
    var saved = page.draft && typeof page.draft === 'object' ? page.draft : {};
    rec = { regions: Array.isArray(saved.regions) ? saved.regions : [],
            mouseTracking: Array.isArray(saved.mouseTracking) ? saved.mouseTracking : [] };
    var traces = rec.regions.map(function (r) { return r.drawTrace; });
    S.resume(S.latestTime(traces.concat([rec.mouseTracking, rec.regions]), 'time'));
    app.appendChild(el('h1', null, 'Draw a box around each object and name it'));
    app.appendChild(el('p', 'description', 'Press on one corner, drag to the opposite corner and release; then pick the class.'));
    app.appendChild(S.status(i));
    var row = el('div', 'verify');
    stage = el('div', 'stage');
    stage.id = 'stage';
    img = S.photo(page);
    stage.appendChild(img);
    row.appendChild(stage);
    var side = el('div', 'labels');
    panel = el('div', 'panel');
    panel.id = 'label-panel';
    panel.hidden = true;
    var lab = el('label', null, 'Class: ');
    var q = el('input');
    q.id = 'region-query';
    q.maxLength = 200;
    q.autocomplete = 'off';
    q.addEventListener('input', function () {
      if (searchTimer) clearTimeout(searchTimer);
      searchTimer = setTimeout(function () {
        if (!pending) return;
        if (q.value.trim()) suggest(q.value.trim()); else if (S.data.model) suggest('');
      }, 150);
    });
    lab.appendChild(q);
    panel.appendChild(lab);
    var ready = el('p', 'status');
    ready.id = 'suggestions-ready';
    panel.appendChild(ready);
    var sug = el('div', 'suggestions');
    sug.id = 'suggestions';
    panel.appendChild(sug);
    var cancel = el('button', null, 'Cancel box');
    cancel.type = 'button';
    cancel.id = 'cancel-box';
    cancel.addEventListener('click', closePanel);
    panel.appendChild(cancel);
    side.appendChild(panel);
    list = el('ul');
    list.id = 'regions';
    side.appendChild(list);
    row.appendChild(side);
    app.appendChild(row);
    S.track(img, rec.mouseTracking, 'time');
    img.addEventListener('mousedown', function (ev) {
      if (pending) return;
      ev.preventDefault();
      var p = S.normalised(img, ev);
      var node = el('div', 'region pending');
      stage.appendChild(node);
      drawing = { start: p, node: node, trace: [{ x: p.x, y: p.y, time: S.now() }] };
      lastSample = S.now();
      drawBox(node, clampBox(p, p));
    });
    var submit = S.submitButton(i);
    var loaded = function () { submit.disabled = false; };
    img.loaded.then(loaded);
    app.appendChild(submit);
    showRegions();
  }

  document.addEventListener('mousemove', function (ev) {
    if (!drawing) return;
    var p = S.normalised(img, ev);
    var t = S.now();
    if (t - lastSample >= S.SAMPLE_MS) {
      drawing.trace.push({ x: p.x, y: p.y, time: t });
      lastSample = t;
    }
    drawBox(drawing.node, clampBox(drawing.start, p));
  });
  document.addEventListener('mouseup', function (ev) {
    if (!drawing) return;
    var d = drawing;
    drawing = null;
    var p = S.normalised(img, ev);
    d.trace.push({ x: p.x, y: p.y, time: S.now() });
    var b = clampBox(d.start, p);
    if (b.x1 - b.x0 < 0.01 || b.y1 - b.y0 < 0.01) {
      stage.removeChild(d.node);
      return;
    }
    drawBox(d.node, b);
    pending = { box: b, trace: d.trace, source: null, suggestions: [] };
    S.dirty();
    openPanel();
  });

  function payload() {
    var f = S.imageFields(img);
    var regions = rec.regions.map(function (r) {
      return { box: r.box, label: r.label, query: r.query, source: r.source, suggestions: r.suggestions,
               drawTrace: r.drawTrace, time: r.time };
    });
    return { imageID: Number(img.dataset.imageId), originalSize: f.originalSize, onPageSize: f.onPageSize,
             imagePosition: f.imagePosition, regions: regions, mouseTracking: rec.mouseTracking };
  }

  S.run({
    render: render,
    payload: payload,
    draft: function () { return { regions: rec.regions, mouseTracking: rec.mouseTracking }; },
  });
})();
