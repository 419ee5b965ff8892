// labelscope studio: what every task page shares. Reads the HIT data that
// the server embeds in the page, asks for the worker id, starts the
// assignment, walks through the pages that are not yet saved, submits each
// page (a page counts as done only when the server acknowledges it) and
// autosaves partial work. A task script calls Studio.run(task) with:
//   render(index, page)  builds the page from the server's page JSON
//   payload()            the task's fields of the page submission
//   draft()              the partial work to autosave
(function () {
  'use strict';
  var SAMPLE_MS = 16;
  var AUTOSAVE_MS = 5000;
  var data = JSON.parse(document.getElementById('hit-data').textContent);
  var app = document.getElementById('app');
  var st = { assignment: null, key: null, submitted: [], page: null, start: 0, dirty: false,
             submitting: false, timer: null, task: null };
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

  // Milliseconds since the page was shown (0.1 ms resolution).
  function now() { return Math.round((performance.now() - st.start) * 10) / 10; }

  function showError(msg) {
    var e = document.getElementById('error') || app.appendChild(el('p', 'error'));
    e.id = 'error';
    e.textContent = msg;
  }

  function base() { return '/api/hit/' + encodeURIComponent(data.token); }

  function auth() { return 'assignment=' + encodeURIComponent(st.assignment) + '&key=' + encodeURIComponent(st.key); }

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
    api('GET', base() + '/page/' + i + '?' + auth()).then(function (p) {
      clear();
      stopAutosave();
      st.page = i;
      st.dirty = false;
      st.start = performance.now();
      st.task.render(i, p);
      startAutosave(i);
    }).catch(function (e) { showError('Could not load page ' + (i + 1) + ': ' + e.message); });
  }

  // "Page i of n", as every task shows it.
  function status(index) {
    var s = el('p', 'status', 'Page ' + (index + 1) + ' of ' + data.pages);
    s.id = 'page-status';
    return s;
  }

  // The submit button of page `index`; enabled by the task when ready.
  function submitButton(index) {
    var b = el('button', null, 'Submit page');
    b.id = 'submit';
    b.disabled = true;
    b.addEventListener('click', function () { send(index, b); });
    return b;
  }

  // Continues the clock after the latest time in a restored draft, so that
  // every list stays in time order.
  function resume(latest) {
    if (latest >= 0) st.start = performance.now() - (latest + 1);
  }

  // The largest `timeKey` value among the entries of the given lists.
  function latestTime(lists, timeKey) {
    var latest = -1;
    lists.forEach(function (l) {
      (Array.isArray(l) ? l : []).forEach(function (e) {
        if (e && typeof e[timeKey] === 'number' && e[timeKey] > latest) latest = e[timeKey];
      });
    });
    return latest;
  }

  // The point of a mouse event, normalised to element `e` and clamped to [0, 1].
  function normalised(e, ev) {
    var r = e.getBoundingClientRect();
    var x = (ev.clientX - r.left) / r.width;
    var y = (ev.clientY - r.top) / r.height;
    return { x: Math.min(1, Math.max(0, x)), y: Math.min(1, Math.max(0, y)) };
  }

  // Records the mouse over element `e` into `list` (at most every 16 ms).
  function track(e, list, timeKey) {
    var last = -Infinity;
    e.addEventListener('mousemove', function (ev) {
      var t = now();
      if (t - last < SAMPLE_MS) return;
      last = t;
      var p = normalised(e, ev);
      var s = { x: p.x, y: p.y };
      s[timeKey] = t;
      list.push(s);
      st.dirty = true;
    });
  }

  function position(e) {
    var r = e.getBoundingClientRect();
    return { x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height };
  }

  // Sizes and position of a one-image page's image.
  function imageFields(img) {
    var p = position(img);
    return { originalSize: { width: Math.max(1, img.naturalWidth || 1), height: Math.max(1, img.naturalHeight || 1) },
             onPageSize: { width: Math.max(1, p.width), height: Math.max(1, p.height) },
             imagePosition: { x: p.x, y: p.y } };
  }

  // The image of a one-image page (`#photo`), loading from the page's first
  // image; its `loaded` promise settles once it has loaded (or failed to).
  function photo(page) {
    var img = el('img');
    img.id = 'photo';
    img.alt = '';
    img.draggable = false;
    img.dataset.imageId = String(page.images[0].id);
    img.loaded = new Promise(function (resolve) {
      img.addEventListener('load', resolve);
      img.addEventListener('error', resolve);
    });
    img.src = page.images[0].url;
    return img;
  }

  function send(index, button) {
    if (st.submitting) return;
    st.submitting = true;
    button.disabled = true;
    var body = st.task.payload();
    body.assignment = st.assignment;
    body.key = st.key;
    body.time_spent_ms = Math.round(performance.now() - st.start);
    body.viewport = { width: Math.max(1, window.innerWidth), height: Math.max(1, window.innerHeight) };
    api('POST', base() + '/page/' + index, body).then(function (r) {
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
      api('PUT', base() + '/draft/' + index, { assignment: st.assignment, key: st.key, draft: st.task.draft() })
        .catch(function () { st.dirty = true; });
    }, AUTOSAVE_MS);
  }

  function stopAutosave() {
    if (st.timer) clearInterval(st.timer);
    st.timer = null;
  }

  function run(task) {
    st.task = task;
    if (data.worker) begin(data.worker); else askWorker();
  }

  window.Studio = { data: data, app: app, state: st, el: el, api: api, now: now, base: base, auth: auth,
                    showError: showError, status: status, submitButton: submitButton, resume: resume,
                    latestTime: latestTime, normalised: normalised, track: track, position: position,
                    imageFields: imageFields, photo: photo, dirty: function () { st.dirty = true; }, run: run, SAMPLE_MS: SAMPLE_MS };
})();
