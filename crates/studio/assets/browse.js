// labelscope studio: the Browse task (ImageNet style). Shows one class and a
// grid of candidate images per page; a click toggles an image's selection.
// Records per image: hover enter/leave times, the mouse trace (sampled at
// most every 16 ms, normalised to the image), every click with its position
// and time, sizes and position on the page. Partial work is autosaved; a
// page counts as done only when the server acknowledges it.
(function () {
  'use strict';
  var SAMPLE_MS = 16;
  var AUTOSAVE_MS = 5000;
  var data = JSON.parse(document.getElementById('hit-data').textContent);
  var app = document.getElementById('app');
  var st = { assignment: null, key: null, page: null, records: [], byId: {}, start: 0, dirty: false,
             lastSample: {}, submitting: false, timer: null };
  window.__studio = st;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clear() { while (app.firstChild) app.removeChild(app.firstChild); }

  function api(method, url, body) {
    var opts = { method: method, headers: {} };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      if (r.status === 204) return null;
      return r.json().catch(function () { return null; }).then(function (j) {
        if (!r.ok) throw new Error((j && j.error) || ('HTTP ' + r.status));
        return j;
      });
    });
  }

  function now() { return Math.round((performance.now() - st.start) * 10) / 10; }

  function showError(msg) {
    var e = document.getElementById('error') || app.appendChild(el('p', 'error'));
    e.id = 'error';
    e.textContent = msg;
  }

  function askWorker() {
    clear();
    app.appendChild(el('h1', null, 'Annotation task'));
    var f = el('form', 'worker');
    var label = el('label', null, 'Your worker id: ');
    var input = el('input');
    input.id = 'worker';
    input.required = true;
    label.appendChild(input);
    f.appendChild(label);
    var b = el('button', null, 'Start');
    b.type = 'submit';
    b.id = 'start';
    f.appendChild(b);
    f.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (input.value.trim()) begin(input.value.trim());
    });
    app.appendChild(f);
  }

  function base() { return '/api/hit/' + encodeURIComponent(data.token); }

  function begin(worker) {
    api('POST', base() + '/start', { worker: worker }).then(function (r) {
      st.assignment = r.assignment;
      st.key = r.key;
      st.submitted = r.submitted;
      next(0);
    }).catch(function (e) { showError('Could not start: ' + e.message); });
  }

  function next(from) {
    var i = from;
    while (i < data.pages && st.submitted.indexOf(i) >= 0) i++;
    if (i >= data.pages) return done();
    load(i);
  }

  function done() {
    stopAutosave();
    clear();
    app.appendChild(el('h1', null, 'Thank you!'));
    var p = el('p', 'status', 'All ' + data.pages + ' pages of this task are saved.');
    p.id = 'complete';
    app.appendChild(p);
  }

  function load(i) {
    var q = '?assignment=' + encodeURIComponent(st.assignment) + '&key=' + encodeURIComponent(st.key);
    api('GET', base() + '/page/' + i + q).then(function (p) { render(i, p); })
      .catch(function (e) { showError('Could not load page ' + (i + 1) + ': ' + e.message); });
  }

  function position(img) {
    var r = img.getBoundingClientRect();
    return { x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height };
  }

  function normalised(img, ev) {
    var r = img.getBoundingClientRect();
    var x = (ev.clientX - r.left) / r.width;
    var y = (ev.clientY - r.top) / r.height;
    return { x: Math.min(1, Math.max(0, x)), y: Math.min(1, Math.max(0, y)) };
  }

  function render(index, page) {
    clear();
    stopAutosave();
    st.page = index;
    st.records = [];
    st.byId = {};
    st.lastSample = {};
    st.dirty = false;
    st.start = performance.now();
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
    if (data.pointer_nudge) app.appendChild(el('p', 'instruction', 'Click on the object.'));
    var status = el('p', 'status', 'Page ' + (index + 1) + ' of ' + data.pages);
    status.id = 'page-status';
    app.appendChild(status);
    var grid = el('div', 'grid' + (data.pointer_nudge ? ' nudge' : ''));
    grid.id = 'grid';
    var draft = {};
    if (page.draft && Array.isArray(page.draft.images)) {
      page.draft.images.forEach(function (r) { if (r && typeof r.imageID === 'number') draft[r.imageID] = r; });
    }
    // Times of a restored draft come from an earlier showing of the page:
    // continue the clock after them so that every list stays in time order.
    var latest = -1;
    Object.keys(draft).forEach(function (k) {
      ['hoveredRecord', 'mouseTracking', 'selectedRecord'].forEach(function (f) {
        (Array.isArray(draft[k][f]) ? draft[k][f] : []).forEach(function (e) {
          if (e && typeof e.time === 'number' && e.time > latest) latest = e.time;
        });
      });
    });
    if (latest >= 0) st.start = performance.now() - (latest + 1);
    var pending = page.images.length;
    var submit = el('button', null, 'Submit page');
    submit.id = 'submit';
    submit.disabled = pending > 0;
    page.images.forEach(function (im) {
      var saved = draft[im.id];
      var rec = { imageID: im.id, originalSize: { width: 1, height: 1 }, onPageSize: { width: 1, height: 1 },
                  imagePosition: { x: 0, y: 0 },
                  hoveredRecord: saved && Array.isArray(saved.hoveredRecord) ? saved.hoveredRecord : [],
                  mouseTracking: saved && Array.isArray(saved.mouseTracking) ? saved.mouseTracking : [],
                  selectedRecord: saved && Array.isArray(saved.selectedRecord) ? saved.selectedRecord : [],
                  selected: false };
      rec.selected = rec.selectedRecord.length % 2 === 1;
      st.records.push(rec);
      st.byId[im.id] = rec;
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
      img.addEventListener('mouseenter', function () { rec.hoveredRecord.push({ action: 'enter', time: now() }); st.dirty = true; });
      img.addEventListener('mouseleave', function () { rec.hoveredRecord.push({ action: 'leave', time: now() }); st.dirty = true; });
      img.addEventListener('mousemove', function (ev) {
        var t = now();
        var last = st.lastSample[im.id];
        if (last !== undefined && t - last < SAMPLE_MS) return;
        st.lastSample[im.id] = t;
        var p = normalised(img, ev);
        rec.mouseTracking.push({ x: p.x, y: p.y, time: t });
        st.dirty = true;
      });
      img.addEventListener('click', function (ev) {
        var p = normalised(img, ev);
        rec.selectedRecord.push({ x: p.x, y: p.y, time: now() });
        rec.selected = !rec.selected;
        cell.classList.toggle('selected', rec.selected);
        st.dirty = true;
      });
      img.src = im.url;
      cell.appendChild(img);
      grid.appendChild(cell);
    });
    app.appendChild(grid);
    submit.addEventListener('click', function () { send(index, submit); });
    app.appendChild(submit);
    startAutosave(index);
  }

  function snapshot() {
    st.records.forEach(function (rec) {
      var img = app.querySelector('img[data-image-id="' + rec.imageID + '"]');
      if (!img) return;
      var p = position(img);
      rec.imagePosition = { x: p.x, y: p.y };
      if (p.width >= 1 && p.height >= 1) rec.onPageSize = { width: p.width, height: p.height };
    });
  }

  function payload(withTime) {
    snapshot();
    var body = { assignment: st.assignment, key: st.key, images: st.records };
    if (withTime) {
      body.time_spent_ms = Math.round(performance.now() - st.start);
      body.viewport = { width: Math.max(1, window.innerWidth), height: Math.max(1, window.innerHeight) };
    }
    return body;
  }

  function send(index, button) {
    if (st.submitting) return;
    st.submitting = true;
    button.disabled = true;
    api('POST', base() + '/page/' + index, payload(true)).then(function (r) {
      st.submitting = false;
      st.submitted.push(index);
      st.lastAck = r;
      next(index + 1);
    }).catch(function (e) {
      st.submitting = false;
      button.disabled = false;
      showError('The page was not saved (' + e.message + '). Your work is kept; press Submit again.');
    });
  }

  function startAutosave(index) {
    st.timer = setInterval(function () {
      if (!st.dirty || st.submitting) return;
      st.dirty = false;
      var body = payload(false);
      api('PUT', base() + '/draft/' + index, { assignment: body.assignment, key: body.key, draft: { images: body.images } })
        .catch(function () { st.dirty = true; });
    }, AUTOSAVE_MS);
  }

  function stopAutosave() {
    if (st.timer) clearInterval(st.timer);
    st.timer = null;
  }

  if (data.worker) begin(data.worker); else askWorker();
})();
