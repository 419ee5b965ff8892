// labelscope studio: the Label task (free labelling, Shankar et al. 2020).
// One image per page; the labeler types part of a class name, picks exactly
// one class from the search results (the Region task's class-name search on
// the server), and may mark the escape hatch ("I am not sure / the image
// shows another object") and then pick an alternative class the same way.
// Records every choice (with what was typed) and every escape-hatch toggle
// with its time, plus the mouse trace; the page time and viewport come from
// the shared page script.
(function () {
  'use strict';
  var S = window.Studio;
  var el = S.el;
  var rec = null, img = null, submit = null, loaded = false, index = 0, seq = 0;
  var chosen = { label: null, alternative: null };
  var timers = {};

  function escapeOn() { return document.getElementById('escape').checked; }

  function update() {
    ['label', 'alternative'].forEach(function (target) {
      var c = chosen[target];
      document.getElementById(target + '-chosen').textContent = c ? c.name : 'none yet';
    });
    document.getElementById('alternative-box').hidden = !escapeOn();
    submit.disabled = !(loaded && chosen.label && (!escapeOn() || (chosen.alternative &&
                        chosen.alternative.wnid !== chosen.label.wnid)));
  }

  function search(target, q) {
    var box = document.getElementById(target + '-results');
    var mine = ++seq;
    if (!q) { while (box.firstChild) box.removeChild(box.firstChild); return; }
    S.api('GET', S.base() + '/suggest/' + index + '?' + S.auth() + '&q=' + encodeURIComponent(q)).then(function (r) {
      if (mine !== seq) return;
      while (box.firstChild) box.removeChild(box.firstChild);
      r.suggestions.forEach(function (s) {
        var b = el('button', 'suggestion', s.name);
        b.type = 'button';
        b.dataset.wnid = s.wnid;
        b.addEventListener('click', function () {
          chosen[target] = { wnid: s.wnid, name: s.name };
          rec.labelHistory.push({ target: target, label: s.wnid, name: s.name, query: q, time: S.now() });
          S.dirty();
          update();
        });
        box.appendChild(b);
      });
      document.getElementById(target + '-ready').textContent = r.suggestions.length + ' class(es) found';
    }).catch(function (e) { S.showError('Could not search the classes: ' + e.message); });
  }

  function picker(target, caption) {
    var box = el('div', 'panel');
    var lab = el('label', null, caption);
    var q = el('input');
    q.id = target + '-query';
    q.maxLength = 200;
    q.autocomplete = 'off';
    q.addEventListener('input', function () {
      if (timers[target]) clearTimeout(timers[target]);
      timers[target] = setTimeout(function () { search(target, q.value.trim()); }, 150);
    });
    lab.appendChild(q);
    box.appendChild(lab);
    var ready = el('p', 'status');
    ready.id = target + '-ready';
    box.appendChild(ready);
    var results = el('div', 'suggestions');
    results.id = target + '-results';
    box.appendChild(results);
    var now = el('p', null, 'Chosen: ');
    var name = el('span', 'class-name');
    name.id = target + '-chosen';
    now.appendChild(name);
    box.appendChild(now);
    return box;
  }

  // The last choice for `target` in the history (restored drafts).
  function lastChoice(target) {
    for (var k = rec.labelHistory.length - 1; k >= 0; k--) {
      var h = rec.labelHistory[k];
      if (h.target === target) return { wnid: h.label, name: h.name || h.label };
    }
    return null;
  }

  function render(i, page) {
    var app = S.app;
    index = i;
    loaded = false;
    var saved = page.draft && typeof page.draft === 'object' ? page.draft : {};
    rec = { labelHistory: Array.isArray(saved.labelHistory) ? saved.labelHistory : [],
            escapeHistory: Array.isArray(saved.escapeHistory) ? saved.escapeHistory : [],
            mouseTracking: Array.isArray(saved.mouseTracking) ? saved.mouseTracking : [] };
    S.resume(S.latestTime([rec.labelHistory, rec.escapeHistory, rec.mouseTracking], 'time'));
    chosen = { label: lastChoice('label'), alternative: lastChoice('alternative') };
    app.appendChild(el('h1', null, 'What is in this image?'));
    app.appendChild(el('p', 'description', 'Type part of a class name and pick the one class that fits the image best.'));
    app.appendChild(S.status(i));
    var row = el('div', 'verify');
    img = S.photo(page);
    row.appendChild(img);
    var side = el('div', 'labels');
    side.appendChild(picker('label', 'Class: '));
    var hatch = el('label', 'escape');
    var c = el('input');
    c.type = 'checkbox';
    c.id = 'escape';
    var last = rec.escapeHistory[rec.escapeHistory.length - 1];
    c.checked = !!(last && last.checked);
    c.addEventListener('change', function () {
      rec.escapeHistory.push({ checked: c.checked, time: S.now() });
      S.dirty();
      update();
    });
    hatch.appendChild(c);
    hatch.appendChild(document.createTextNode(' I am not sure, or the image shows another object: give an alternative'));
    side.appendChild(hatch);
    var alt = picker('alternative', 'Alternative class: ');
    alt.id = 'alternative-box';
    side.appendChild(alt);
    row.appendChild(side);
    app.appendChild(row);
    S.track(img, rec.mouseTracking, 'time');
    submit = S.submitButton(i);
    img.loaded.then(function () { loaded = true; update(); });
    app.appendChild(submit);
    update();
  }

  function payload() {
    var f = S.imageFields(img);
    var esc = escapeOn();
    var history = rec.labelHistory.map(function (h) {
      return { target: h.target, label: h.label, query: h.query, time: h.time };
    });
    return { imageID: Number(img.dataset.imageId), originalSize: f.originalSize, onPageSize: f.onPageSize,
             imagePosition: f.imagePosition, label: chosen.label ? chosen.label.wnid : null, escape: esc,
             alternative: esc && chosen.alternative ? chosen.alternative.wnid : null, labelHistory: history,
             escapeHistory: rec.escapeHistory, mouseTracking: rec.mouseTracking };
  }

  S.run({
    render: render,
    payload: payload,
    draft: function () {
      return { labelHistory: rec.labelHistory, escapeHistory: rec.escapeHistory, mouseTracking: rec.mouseTracking };
    },
  });
})();
