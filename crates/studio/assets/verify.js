// labelscope studio: the Verify task (ImageNet-ReaL / expert re-assessment
// style). One image per page with its proposed labels; each is answered
// yes / no / maybe (answers can be changed; every click is kept with its
// time), the image can be flagged as problematic, and a free-text
// alternative label can be given. The mouse trace over the image is kept.
(function () {
  'use strict';
  var S = window.Studio;
  var el = S.el;
  var FLAGS = [['wrong_original_label', 'The original label is wrong'], ['drawing', 'It is a drawing or a rendering'],
               ['heavy_edit', 'It is heavily edited'], ['inappropriate', 'It is inappropriate']];
  var rec = null, img = null, labels = [], submit = null, loaded = false;

  function finals() {
    var out = [];
    labels.forEach(function (l) {
      for (var k = rec.answerHistory.length - 1; k >= 0; k--) {
        var h = rec.answerHistory[k];
        if (h.label === l.wnid) { out.push({ label: h.label, answer: h.answer, time: h.time }); return; }
      }
    });
    return out;
  }

  function update() {
    var f = finals();
    submit.disabled = !(loaded && f.length === labels.length);
    f.forEach(function (a) {
      Array.prototype.forEach.call(S.app.querySelectorAll('button.answer[data-label="' + CSS.escape(a.label) + '"]'),
        function (b) { b.classList.toggle('chosen', b.dataset.answer === a.answer); });
    });
  }

  function render(index, page) {
    var app = S.app;
    labels = page.proposed || [];
    loaded = false;
    var saved = page.draft && typeof page.draft === 'object' ? page.draft : {};
    rec = { answerHistory: Array.isArray(saved.answerHistory) ? saved.answerHistory : [],
            mouseTracking: Array.isArray(saved.mouseTracking) ? saved.mouseTracking : [] };
    S.resume(S.latestTime([rec.answerHistory, rec.mouseTracking], 'time'));
    app.appendChild(el('h1', null, 'Which of these labels describe the image?'));
    if (page.class && page.class.name) {
      var o = el('p', 'description', 'Original label: ' + page.class.name);
      o.id = 'original-label';
      app.appendChild(o);
    }
    app.appendChild(S.status(index));
    var row = el('div', 'verify');
    img = S.photo(page);
    row.appendChild(img);
    var side = el('div', 'labels');
    var list = el('ul');
    list.id = 'proposed';
    labels.forEach(function (l) {
      var li = el('li');
      li.dataset.label = l.wnid;
      li.appendChild(el('span', 'class-name', l.name));
      if (l.description) li.appendChild(el('span', 'gloss', ' — ' + l.description));
      var group = el('div', 'answers');
      ['yes', 'no', 'maybe'].forEach(function (a) {
        var b = el('button', 'answer', a);
        b.type = 'button';
        b.dataset.label = l.wnid;
        b.dataset.answer = a;
        b.addEventListener('click', function () {
          rec.answerHistory.push({ label: l.wnid, answer: a, time: S.now() });
          S.dirty();
          update();
        });
        group.appendChild(b);
      });
      li.appendChild(group);
      list.appendChild(li);
    });
    side.appendChild(list);
    var flags = el('fieldset', 'flags');
    flags.appendChild(el('legend', null, 'Problems with the image'));
    FLAGS.forEach(function (f) {
      var lab = el('label');
      var c = el('input');
      c.type = 'checkbox';
      c.id = 'flag-' + f[0];
      c.checked = !!(saved.flags && saved.flags[f[0]]);
      c.addEventListener('change', S.dirty);
      lab.appendChild(c);
      lab.appendChild(document.createTextNode(' ' + f[1]));
      flags.appendChild(lab);
    });
    side.appendChild(flags);
    var alt = el('label', null, 'A better label (optional): ');
    var input = el('input');
    input.id = 'alternative';
    input.maxLength = 200;
    input.value = typeof saved.alternative === 'string' ? saved.alternative : '';
    input.addEventListener('input', S.dirty);
    alt.appendChild(input);
    side.appendChild(alt);
    row.appendChild(side);
    app.appendChild(row);
    S.track(img, rec.mouseTracking, 'time');
    submit = S.submitButton(index);
    var ready = function () { loaded = true; update(); };
    img.loaded.then(ready);
    app.appendChild(submit);
    update();
  }

  function flagValues() {
    var out = {};
    FLAGS.forEach(function (f) { out[f[0]] = document.getElementById('flag-' + f[0]).checked; });
    return out;
  }

  function payload() {
    var f = S.imageFields(img);
    return { imageID: Number(img.dataset.imageId), originalSize: f.originalSize, onPageSize: f.onPageSize,
             imagePosition: f.imagePosition, answers: finals(), answerHistory: rec.answerHistory,
             flags: flagValues(), alternative: document.getElementById('alternative').value.trim(),
             mouseTracking: rec.mouseTracking };
  }

  S.run({
    render: render,
    payload: payload,
    draft: function () {
      return { answerHistory: rec.answerHistory, mouseTracking: rec.mouseTracking, flags: flagValues(),
               alternative: document.getElementById('alternative').value };
    },
  });
})();
