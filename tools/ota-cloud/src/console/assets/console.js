// ota-cloud console: live refresh and the fleet filters. No framework, no build step.
//
// Live refresh: <body data-live-url="/console/live/..." data-live-interval="2000"> polls the
// URL; the answer's regions replace the inner HTML of the elements with the same data-live
// key (the server renders and escapes them). body.dataset.liveTick counts the refreshes.
// Fleet filters: the search box and the three selects hide the rows that do not match at
// once, put the filters in the address bar and ask the server for the matching rows.
(function () {
  'use strict';
  var body = document.body;
  var base = body.dataset.liveUrl;
  var interval = parseInt(body.dataset.liveInterval || '2000', 10);
  var tick = 0;
  var lastHash = null;
  var timer = null;
  var filters = document.getElementById('filters');

  function filterParams() {
    var p = new URLSearchParams();
    if (!filters) { return p; }
    ['q', 'group', 'version', 'state'].forEach(function (k) {
      var el = filters.elements[k];
      if (el && el.value.trim() !== '') { p.set(k, el.value.trim()); }
    });
    return p;
  }

  function liveUrl() {
    if (!base) { return null; }
    if (!filters) { return base; }
    var q = filterParams().toString();
    return base.split('?')[0] + (q ? '?' + q : '');
  }

  // The same rules as the server's (src/console/fleet.rs `matches`).
  function applyFilters() {
    if (!filters) { return; }
    var p = filterParams();
    var needle = (p.get('q') || '').toLowerCase();
    var group = p.get('group') || '';
    var version = p.get('version') || '';
    var state = p.get('state') || '';
    var shown = 0;
    document.querySelectorAll('#devices tbody tr[data-device-id]').forEach(function (tr) {
      var groups = tr.dataset.groups ? tr.dataset.groups.split('\n') : [];
      var ok = true;
      if (needle) {
        ok = tr.dataset.deviceId.indexOf(needle) >= 0 || groups.some(function (g) {
          return g.toLowerCase().indexOf(needle) >= 0;
        });
      }
      if (ok && group) { ok = groups.indexOf(group) >= 0; }
      if (ok && version) { ok = tr.dataset.version === version; }
      if (ok && state) { ok = tr.dataset.state === state; }
      tr.hidden = !ok;
      if (ok) { shown += 1; }
    });
    var count = document.getElementById('device-count');
    if (count) { count.textContent = String(shown); }
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }

  function refresh() {
    var url = liveUrl();
    if (!url) { return; }
    var full = url + (url.indexOf('?') >= 0 ? '&' : '?') + 'h=' + encodeURIComponent(lastHash || '');
    fetch(full, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) {
        if (r.status === 401) { window.location.assign('/login'); throw new Error('logged out'); }
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      })
      .then(function (j) {
        if (j.regions) {
          Object.keys(j.regions).forEach(function (k) {
            document.querySelectorAll('[data-live="' + k + '"]').forEach(function (el) {
              el.innerHTML = j.regions[k];
            });
          });
        }
        lastHash = j.h;
        applyFilters();
        tick += 1;
        body.dataset.liveTick = String(tick);
      })
      .catch(function () { /* the next poll retries */ })
      .then(function () { schedule(interval); });
  }

  if (filters) {
    var debounce = null;
    var changed = function () {
      applyFilters();
      var q = filterParams().toString();
      window.history.replaceState(null, '', '/fleet' + (q ? '?' + q : ''));
      lastHash = null;
      clearTimeout(debounce);
      debounce = setTimeout(function () { schedule(0); }, 150);
    };
    filters.addEventListener('input', changed);
    filters.addEventListener('change', changed);
    filters.addEventListener('submit', function (e) { e.preventDefault(); changed(); });
    applyFilters();
  }
  if (base) { schedule(interval); }
})();
