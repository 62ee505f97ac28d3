// Eddy's live dashboard: one EventSource (/ui/events), plain SVG charts, no
// dependencies. Every dynamic value goes into the DOM through textContent
// (log lines and error messages are untrusted).
'use strict';
(function () {
  const N = 120; // points per series: two minutes at one event a second
  const PAGE = 25; // function rows per page
  const SVG = 'http://www.w3.org/2000/svg';
  const COLORS = {
    blue: '#2563eb', green: '#16a34a', orange: '#ea580c', red: '#dc2626',
    purple: '#7c3aed', teal: '#0d9488', grey: '#94a3b8', indigo: '#4f46e5',
  };

  const app = document.getElementById('app');
  // The page and its event stream authenticate with the session cookie;
  // the key (for the API calls this page makes) stays in this tab only.
  const key = sessionStorage.getItem('eddy-key') || '';
  // Opened as /ui#key=… with a session already open: the key leaves the
  // address (and the history) at once.
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  const params = new URLSearchParams(location.search);
  const admin = app.dataset.admin === 'true';
  const scopeTenant = app.dataset.tenant || '';
  if (admin) app.classList.add('admin');
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- helpers
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const kid of kids) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }
  function setText(el, text) {
    text = String(text);
    if (el.textContent !== text) el.textContent = text;
  }
  // Formatters are built once: toLocaleString builds one per call.
  const NF = [0, 1, 2, 3].map((d) => new Intl.NumberFormat('en-US', { maximumFractionDigits: d }));
  function num(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (digits === undefined) digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
    return NF[Math.max(0, Math.min(3, digits))].format(v);
  }
  // Milliseconds: three significant-ish places, `<0.001` below.
  function ms(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (v > 0 && v < 0.001) return '<0.001';
    return num(v, v >= 100 ? 0 : v >= 10 ? 1 : v >= 1 ? 2 : 3);
  }
  function count(v) { return v === null || v === undefined || Number.isNaN(v) ? '–' : NF[0].format(Math.round(v)); }
  function bytes(b) {
    if (!b) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + ' ' + u[i];
  }
  function ago(ms) {
    if (!ms) return '–';
    const d = Math.max(0, (state.now || Date.now()) - ms) / 1000;
    if (d < 1) return 'now';
    if (d < 60) return Math.floor(d) + 's ago';
    if (d < 3600) return Math.floor(d / 60) + 'm ago';
    if (d < 86400) return Math.floor(d / 3600) + 'h ago';
    return Math.floor(d / 86400) + 'd ago';
  }
  function dur(ms) {
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s2 = ms / 1000;
    if (s2 < 60) return s2.toFixed(1) + ' s';
    if (s2 < 3600) return Math.floor(s2 / 60) + 'm ' + Math.floor(s2 % 60) + 's';
    return Math.floor(s2 / 3600) + 'h ' + Math.floor((s2 % 3600) / 60) + 'm';
  }
  function short(id) { return id && id.length > 13 ? id.slice(0, 8) + '…' + id.slice(-4) : id || ''; }

  // A ring of the last N values, oldest first when read.
  const MIN_WINDOW = 30;
  class Ring {
    constructor() { this.a = new Float32Array(N).fill(NaN); this.i = 0; this.n = 0; }
    push(v) {
      this.a[this.i] = v === null || v === undefined ? NaN : v;
      this.i = (this.i + 1) % N;
      if (this.n < N) this.n++;
    }
    last() { return this.a[(this.i + N - 1) % N]; }
    at(k) { return this.a[(this.i + k) % N]; }
    max() { let m = 0; for (const v of this.a) if (v > m) m = v; return m; }
  }
  function niceMax(m) {
    if (!(m > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(m)));
    for (const f of [1, 2, 2.5, 5, 10]) if (m <= f * p) return f * p;
    return 10 * p;
  }
  // The points a set of rings shows: what they hold, 30 at least, N at most.
  function windowOf(rings) {
    let n = MIN_WINDOW;
    for (const r of rings) n = Math.max(n, r.n);
    return Math.min(N, n);
  }
  // An SVG path through the last `win` values of a ring, scaled into w×h;
  // gaps for NaN.
  function pathOf(ring, w, hgt, max, pad, win) {
    pad = pad || 0;
    win = win || N;
    let d = '';
    let pen = false;
    for (let k = N - win; k < N; k++) {
      const v = ring.at(k);
      if (Number.isNaN(v)) { pen = false; continue; }
      const x = ((k - (N - win)) * w) / (win - 1);
      const y = pad + (hgt - 2 * pad) * (1 - Math.min(v, max) / max);
      d += (pen ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
      pen = true;
    }
    return d;
  }
  // The area under the same values: one closed shape per run without gaps.
  function areaOf(ring, w, hgt, max, pad, win) {
    let d = '';
    let seg = [];
    const base = (hgt - pad).toFixed(1);
    const flush = () => {
      if (seg.length > 1) d += `M${seg[0][0]} ${base}` + seg.map(([x, y]) => `L${x} ${y}`).join('') + `L${seg[seg.length - 1][0]} ${base}Z`;
      seg = [];
    };
    for (let k = N - win; k < N; k++) {
      const v = ring.at(k);
      if (Number.isNaN(v)) { flush(); continue; }
      seg.push([(((k - (N - win)) * w) / (win - 1)).toFixed(1), (pad + (hgt - 2 * pad) * (1 - Math.min(v, max) / max)).toFixed(1)]);
    }
    flush();
    return d;
  }

  // A small line chart: title, legend with the latest values, y max label.
  class Chart {
    constructor(parent, title, series, opts) {
      this.series = series;
      this.opts = opts || {};
      this.W = 300; this.H = 92; this.left = 30;
      this.legend = h('div', { class: 'legend' });
      const head = h('div', { class: 'chart-head' }, h('span', { class: 'chart-title', text: title }));
      if (this.opts.note) head.append(h('span', { class: 'note', text: this.opts.note }));
      this.svg = s('svg', { viewBox: `0 0 ${this.W} ${this.H + 12}`, role: 'img', 'aria-label': title });
      const plotW = this.W - this.left;
      for (const f of [0, 0.5, 1]) {
        const y = 2 + (this.H - 4) * f;
        this.svg.append(s('line', { x1: this.left, x2: this.W, y1: y, y2: y, class: f === 1 ? 'base-line' : 'grid-line' }));
      }
      this.maxLabel = s('text', { x: this.left - 4, y: 9, 'text-anchor': 'end', class: 'axis' });
      this.midLabel = s('text', { x: this.left - 4, y: 3 + this.H / 2, 'text-anchor': 'end', class: 'axis' });
      const zero = s('text', { x: this.left - 4, y: this.H, 'text-anchor': 'end', class: 'axis' });
      zero.textContent = '0';
      const t0 = s('text', { x: this.left, y: this.H + 11, class: 'axis' });
      this.t0 = t0;
      const t1 = s('text', { x: this.W, y: this.H + 11, 'text-anchor': 'end', class: 'axis' });
      t1.textContent = 'now';
      this.svg.append(this.maxLabel, this.midLabel, zero, t0, t1);
      this.g = s('g', { transform: `translate(${this.left},0)` });
      this.svg.append(this.g);
      this.areas = series.map((sr) => {
        if (!sr.area) return null;
        const a = s('path', { class: 'area', fill: COLORS[sr.color] || sr.color });
        this.g.append(a);
        return a;
      });
      this.paths = series.map((sr) => {
        const p = s('path', { class: 'series', stroke: COLORS[sr.color] || sr.color });
        this.g.append(p);
        return p;
      });
      this.plotW = plotW;
      const box = h('div', { class: 'chart' }, head, this.legend, this.svg);
      parent.append(box);
      this.el = box;
    }
    update(rings) {
      let max = 0;
      for (const r of rings) max = Math.max(max, r.max());
      max = niceMax(Math.max(max, this.opts.min || 0));
      setText(this.maxLabel, fmtAxis(max));
      setText(this.midLabel, fmtAxis(max / 2));
      const win = windowOf(rings);
      setText(this.t0, win >= N ? '−2 min' : `−${win} s`);
      rings.forEach((r, i) => {
        this.paths[i].setAttribute('d', pathOf(r, this.plotW, this.H, max, 2, win));
        if (this.areas[i]) this.areas[i].setAttribute('d', areaOf(r, this.plotW, this.H, max, 2, win));
      });
      this.legend.replaceChildren(...this.series.flatMap((sr, i) => {
        const sw = h('i');
        sw.style.background = COLORS[sr.color] || sr.color;
        const last = rings[i].last();
        return [sw, `${sr.name} ${Number.isNaN(last) ? '–' : num(last, sr.digits)}`];
      }));
    }
  }
  function fmtAxis(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + 'k';
    return v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(v >= 1 ? 1 : 2);
  }
  // A sparkline: one or two paths in a fixed 100×22 box.
  function spark(n, colors, area) {
    const svg = s('svg', { viewBox: '0 0 100 22', preserveAspectRatio: 'none', 'aria-hidden': 'true' });
    const paths = [];
    if (area) { const a = s('path', { class: 'area', fill: COLORS[colors[0]] }); svg.append(a); paths.area = a; }
    for (let i = 0; i < n; i++) {
      const p = s('path', { class: 'series', stroke: COLORS[colors[i]] });
      svg.append(p);
      paths.push(p);
    }
    return { svg, paths };
  }
  function drawSpark(sp, rings, minMax) {
    let max = minMax || 0;
    for (const r of rings) max = Math.max(max, r.max());
    max = max > 0 ? max : 1;
    const win = windowOf(rings);
    rings.forEach((r, i) => {
      const d = pathOf(r, 100, 22, max, 1.5, win);
      if (sp.paths[i].getAttribute('d') !== d) sp.paths[i].setAttribute('d', d);
      if (i === 0 && sp.paths.area) sp.paths.area.setAttribute('d', areaOf(r, 100, 22, max, 1.5, win));
    });
  }

  // ------------------------------------------------------------------ state
  const storeKey = 'eddy.ui.runs:' + (scopeTenant || '*');
  const state = {
    fns: new Map(), // key → { row, s: {…rings}, running }
    totals: { backlog: new Ring(), arrivals: new Ring(), completions: new Ring(), warm: new Ring(), inflight: new Ring(), dead: new Ring() },
    workers: new Map(), // id → { row, rate: Ring, seen }
    last: null, runs: [], dead: [], invocations: [], schedules: [], notes: {},
    watched: [], selected: null, userSelected: false, page: 0,
    filter: '', sort: 'busy', now: 0, ticks: 0, openTree: new Set(), closedTree: new Set(),
    invOpen: null,
  };
  try { state.watched = JSON.parse(sessionStorage.getItem(storeKey) || '[]'); } catch (_) { state.watched = []; }
  for (const r of (params.get('runs') || '').split(',')) if (r && !state.watched.includes(r)) state.watched.push(r);

  function saveWatched() {
    try { sessionStorage.setItem(storeKey, JSON.stringify(state.watched)); } catch (_) { /* private mode */ }
  }

  function newFn(row) {
    return {
      row,
      s: {
        lag: new Ring(), pending: new Ring(), arrivals: new Ring(), completions: new Ring(),
        warm: new Ring(), running: new Ring(), mean: new Ring(), p50: new Ring(), p99: new Ring(),
        cold: new Ring(), errors: new Ring(),
      },
      el: null,
    };
  }

  // ------------------------------------------------------------------ stream
  let es = null;
  let lastMessage = 0;
  function connect() {
    if (es) es.close();
    const q = new URLSearchParams();
    if (scopeTenant) q.set('tenant', scopeTenant);
    if (state.watched.length) q.set('runs', state.watched.join(','));
    es = new EventSource('/ui/events?' + q.toString());
    setConn('connecting', 'connecting…');
    es.onopen = () => setConn('live', 'live');
    es.onerror = () => setConn('reconnecting', 'reconnecting…');
    es.onmessage = (ev) => {
      lastMessage = Date.now();
      let data;
      try { data = JSON.parse(ev.data); } catch (_) { return; }
      apply(data);
      setConn('live', 'live');
      schedule();
    };
  }
  function setConn(st, text) {
    const c = $('conn');
    if (c.dataset.state !== st) c.dataset.state = st;
    setText($('conn-text'), text);
  }
  setInterval(() => {
    if (lastMessage && Date.now() - lastMessage > 5000 && $('conn').dataset.state === 'live') setConn('stale', 'stale');
  }, 1000);

  function apply(d) {
    state.now = d.at_ms;
    state.ticks++;
    state.last = d;
    if (d.full) {
      // A new stream: rows are sent whole again; keep the history we have.
      const keep = new Set(d.functions.map((f) => f.key));
      for (const k of [...state.fns.keys()]) if (!keep.has(k)) state.fns.delete(k);
    }
    for (const f of d.functions) {
      const cur = state.fns.get(f.key);
      if (cur) cur.row = f; else state.fns.set(f.key, newFn(f));
      if (f.mean_ms !== null) state.fns.get(f.key).lastMean = f.mean_ms;
    }
    for (const k of d.removed || []) state.fns.delete(k);
    // In flight per function, from the workers' heartbeats.
    const running = new Map();
    for (const w of d.workers) for (const [k, n] of Object.entries(w.streams || {})) running.set(k, (running.get(k) || 0) + n);
    for (const [k, f] of state.fns) {
      const r = f.row;
      const sr = f.s;
      sr.lag.push(r.lag); sr.pending.push(r.pending);
      sr.arrivals.push(r.arrivals); sr.completions.push(r.completions);
      sr.warm.push(r.warm); sr.running.push(running.get(k) || 0);
      sr.mean.push(r.mean_ms); sr.p50.push(r.p50_ms); sr.p99.push(r.p99_ms);
      sr.cold.push(r.cold); sr.errors.push(r.errors);
    }
    const t = d.totals;
    state.totals.backlog.push(t.lag + t.pending);
    state.totals.arrivals.push(t.arrivals);
    state.totals.completions.push(t.completions);
    state.totals.warm.push(t.warm);
    state.totals.inflight.push(t.in_flight);
    state.totals.dead.push(t.dead_letters);
    const seen = new Set();
    for (const w of d.workers) {
      seen.add(w.id);
      let cur = state.workers.get(w.id);
      if (!cur) { cur = { row: w, rate: new Ring() }; state.workers.set(w.id, cur); }
      cur.row = w;
      cur.rate.push(w.rate);
    }
    for (const id of [...state.workers.keys()]) if (!seen.has(id)) state.workers.delete(id);
    if (d.runs) { state.runs = d.runs; state.dirtyRuns = true; }
    if (d.dead_letters) { state.dead = d.dead_letters; state.dirtyDead = true; }
    if (d.invocations) { state.invocations = d.invocations; state.dirtyInv = true; }
    if (d.schedules) { state.schedules = d.schedules; state.dirtySched = true; }
    state.notes = d.notes || {};
    if (!state.userSelected && (!state.selected || !state.fns.has(state.selected))) {
      const best = sorted('busy')[0];
      state.selected = best ? best.row.key : null;
    }
    document.body.dataset.ticks = String(state.ticks);
  }

  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  }

  // ------------------------------------------------------------------ render
  function render() {
    renderHeader();
    renderCards();
    renderCharts();
    renderFunctions();
    renderWorkers();
    if (state.dirtyRuns) { state.dirtyRuns = false; renderRuns(); }
    if (state.dirtyDead) { state.dirtyDead = false; renderDead(); }
    if (state.dirtyInv) { state.dirtyInv = false; renderInvocations(); }
    if (state.dirtySched || state.ticks === 1) { state.dirtySched = false; renderSchedules(); }
    const n = state.notes;
    setText($('notes-extra'), n.sampled_records !== undefined ? `Records sampled by this page: ${count(n.sampled_records)}.` : '');
    setText($('dl-hint'), n.dead_letters_truncated
      ? 'final failures; only the oldest 100 per tenant can be read (the queue reads oldest first)'
      : 'final failures, newest first');
  }

  function renderHeader() {
    const d = state.last;
    const scope = $('scope');
    scope.replaceChildren(d.scope.admin ? 'admin · ' : 'tenant ', h('b', { text: d.scope.tenant || 'all tenants' }));
    const c = d.controller;
    const ctl = $('controller');
    if (c) {
      ctl.replaceChildren('controller ', h('b', { text: short(c.leader) }),
        ` · replicas ${c.current_replicas} live / ${c.desired_replicas} wanted · decided ${dur(c.age_ms)} ago`);
    } else {
      ctl.replaceChildren('controller: ', h('b', { text: 'no decision published' }), ' (warm concurrency unknown)');
    }
  }

  const cardDefs = [
    ['functions', 'Functions', null],
    ['backlog', 'Backlog', 'backlog', 'orange'],
    ['arrivals', 'Arrivals / s', 'arrivals', 'blue'],
    ['completions', 'Completions / s', 'completions', 'green'],
    ['warm', 'Warm slots', 'warm', 'purple'],
    ['inflight', 'In flight', 'inflight', 'teal'],
    ['dead', 'Dead letters', 'dead', 'red'],
  ];
  const cards = {};
  for (const [id, label, ring, color] of cardDefs) {
    const value = h('div', { class: 'value', 'data-card': id, text: '–' });
    const el = h('div', { class: 'card' }, h('div', { class: 'label', text: label }), value);
    let sp = null;
    if (ring) { sp = spark(1, [color], true); el.append(sp.svg); } else {
      const sub = h('div', { class: 'hint', text: '' });
      el.append(sub);
      cards.fnSub = sub;
    }
    cards[id] = { value, sp, ring };
    $('cards').append(el);
  }
  function renderCards() {
    const t = state.last.totals;
    const vals = {
      functions: count(t.functions), backlog: count(t.lag + t.pending), arrivals: num(t.arrivals, 1),
      completions: num(t.completions, 1), warm: count(t.warm), inflight: count(t.in_flight), dead: count(t.dead_letters),
    };
    for (const [id, c] of Object.entries(cards)) {
      if (!c.value) continue;
      setText(c.value, vals[id]);
      if (c.sp) drawSpark(c.sp, [state.totals[c.ring]]);
    }
    setText(cards.fnSub, `${count(t.active)} active · ${count(t.workers)} worker${t.workers === 1 ? '' : 's'}`);
  }

  // Function detail charts.
  const charts = {};
  (function buildCharts() {
    const box = $('charts');
    charts.backlog = new Chart(box, 'Backlog', [{ name: 'lag', color: 'orange', digits: 0, area: true }, { name: 'pending', color: 'blue', digits: 0 }]);
    charts.rate = new Chart(box, 'Throughput / s', [{ name: 'arrivals', color: 'blue', digits: 1, area: true }, { name: 'done', color: 'green', digits: 1 }]);
    charts.warm = new Chart(box, 'Concurrency', [{ name: 'warm', color: 'purple', digits: 0, area: true }, { name: 'running', color: 'teal', digits: 0 }]);
    charts.dur = new Chart(box, 'Duration ms', [{ name: 'mean', color: 'green', digits: 3 }, { name: 'p50*', color: 'blue', digits: 3 }, { name: 'p99*', color: 'red', digits: 3 }],
      { note: 'mean: all attempts · p50/p99: sampled records' });
    charts.cold = new Chart(box, 'Cold starts*', [{ name: 'sampled', color: 'indigo', digits: 0 }], { note: 'cumulative, among sampled records' });
    charts.errors = new Chart(box, 'Errors', [{ name: 'dead letters', color: 'red', digits: 0 }], { note: 'final failures in the dead-letter stream' });
  })();
  function renderCharts() {
    const f = state.selected && state.fns.get(state.selected);
    setText($('detail-name'), f ? f.row.key : '—');
    if (!f) { setText($('detail-hint'), 'no function yet: deploy one'); return; }
    const r = f.row;
    setText($('detail-hint'), r.reason ? `controller: ${r.reason}` : (state.userSelected ? '' : 'the busiest function; click a row to pick another'));
    const sr = f.s;
    const facts = [
      ['warm', `${r.warm} on ${r.workers} worker${r.workers === 1 ? '' : 's'}`],
      ['completed', count(r.completed)],
      ['smoothed arrivals', num(r.arrival_rate, 2) + '/s'],
      ['smoothed service', r.service_ms ? ms(r.service_ms) + ' ms' : '–'],
      ['sampled', `${count(r.samples)} records`],
      ['dead letters', count(r.errors)],
      ['last active', r.last_active_ms ? ago(r.last_active_ms) : '–'],
      ['scales to zero', r.zero_at_ms ? (r.zero_at_ms > state.now ? 'in ' + dur(r.zero_at_ms - state.now) : 'now') : (r.warm ? 'not while busy' : 'at zero')],
    ];
    $('facts').replaceChildren(...facts.map(([k, v]) => h('span', {}, k + ' ', h('b', { text: v }))));
    charts.backlog.update([sr.lag, sr.pending]);
    charts.rate.update([sr.arrivals, sr.completions]);
    charts.warm.update([sr.warm, sr.running]);
    charts.dur.update([sr.mean, sr.p50, sr.p99]);
    charts.cold.update([sr.cold]);
    charts.errors.update([sr.errors]);
  }

  // Functions table: sorted, filtered, one page of reused rows.
  function activity(r) { return (r.lag + r.pending) * 10 + (r.arrivals || 0) + (r.completions || 0) + r.warm * 0.1; }
  function sorted(by) {
    const filter = state.filter;
    const all = [];
    for (const f of state.fns.values()) if (!filter || f.row.key.includes(filter)) all.push(f);
    const byName = (a, b) => (a.row.key < b.row.key ? -1 : a.row.key > b.row.key ? 1 : 0);
    const cmp = {
      busy: (a, b) => activity(b.row) - activity(a.row) || (b.row.last_active_ms - a.row.last_active_ms) || byName(a, b),
      name: byName,
      backlog: (a, b) => (b.row.lag + b.row.pending) - (a.row.lag + a.row.pending) || byName(a, b),
      arrivals: (a, b) => (b.row.arrivals || 0) - (a.row.arrivals || 0) || byName(a, b),
      errors: (a, b) => b.row.errors - a.row.errors || byName(a, b),
      p99: (a, b) => (b.row.p99_ms || 0) - (a.row.p99_ms || 0) || byName(a, b),
    }[by] || byName;
    return all.sort(cmp);
  }
  const fnCols = ['name', 'lag', 'pending', 'sb', 'arrivals', 'completions', 'st', 'warm', 'completed', 'mean', 'pct', 'cold', 'errors', 'active'];
  const rowPool = [];
  function fnRow() {
    const tr = h('tr');
    const cells = {};
    for (const c of fnCols) {
      const td = h('td', { 'data-col': c });
      if (c === 'name') td.className = 'l fn-name';
      if (c === 'sb' || c === 'st') {
        td.className = 'spark';
        const sp = c === 'sb' ? spark(2, ['orange', 'blue']) : spark(2, ['blue', 'green']);
        td.append(sp.svg);
        cells[c] = sp;
      } else cells[c] = td;
      tr.append(td);
    }
    tr.addEventListener('click', () => {
      if (tr.dataset.key) { state.selected = tr.dataset.key; state.userSelected = true; schedule(); }
    });
    return { tr, cells };
  }
  function cell(td, text, zero) {
    setText(td, text);
    const z = !!zero;
    if (td.classList.contains('zero') !== z) td.classList.toggle('zero', z);
  }
  function renderFunctions() {
    const list = sorted(state.sort);
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    if (state.page >= pages) state.page = pages - 1;
    const start = state.page * PAGE;
    const view = list.slice(start, start + PAGE);
    setText($('fn-count'), `${count(list.length)}${state.filter ? ' matching' : ''}`);
    setText($('fn-page'), list.length ? `${start + 1}–${start + view.length} of ${count(list.length)}` : '0 of 0');
    $('fn-prev').disabled = state.page === 0;
    $('fn-next').disabled = state.page >= pages - 1;
    const body = $('fn-body');
    while (rowPool.length < view.length) rowPool.push(fnRow());
    view.forEach((f, i) => {
      const { tr, cells } = rowPool[i];
      const r = f.row;
      if (tr.dataset.key !== r.key) {
        tr.dataset.key = r.key;
        tr.dataset.fn = r.function;
        cells.name.replaceChildren(
          state.last.scope.tenant ? '' : h('span', { class: 'tenant', text: r.tenant + '/' }), r.function);
        cells.name.title = r.key;
      }
      const sel = r.key === state.selected;
      if (tr.classList.contains('sel') !== sel) tr.classList.toggle('sel', sel);
      cell(cells.lag, count(r.lag), !r.lag);
      cell(cells.pending, count(r.pending), !r.pending);
      cell(cells.arrivals, num(r.arrivals, 1), !r.arrivals);
      cell(cells.completions, num(r.completions, 1), !r.completions);
      cell(cells.warm, count(r.warm), !r.warm);
      cell(cells.completed, count(r.completed), !r.completed);
      // The last measured mean; the controller's smoothed one before any.
      const mean = f.lastMean !== undefined ? f.lastMean : r.service_ms || null;
      cell(cells.mean, ms(mean), r.mean_ms === null);
      cell(cells.pct, r.samples ? `${ms(r.p50_ms)} / ${ms(r.p99_ms)}` : '–', !r.samples);
      cell(cells.cold, r.samples ? count(r.cold) : '–', !r.cold);
      cell(cells.errors, count(r.errors), !r.errors);
      if (r.errors && !cells.errors.classList.contains('err')) cells.errors.classList.add('err');
      if (!r.errors && cells.errors.classList.contains('err')) cells.errors.classList.remove('err');
      cell(cells.active, r.last_active_ms ? ago(r.last_active_ms) : '–', !r.last_active_ms);
      drawSpark(cells.sb, [f.s.lag, f.s.pending]);
      drawSpark(cells.st, [f.s.arrivals, f.s.completions]);
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    while (body.children.length > view.length) body.lastChild.remove();
    if (!view.length && !body.querySelector('.empty-row')) {
      body.append(h('tr', { class: 'empty-row' }, h('td', { class: 'l', colspan: fnCols.length, text: state.filter ? 'no function matches' : 'no functions deployed' })));
    }
  }
  $('fn-filter').addEventListener('input', (e) => { state.filter = e.target.value.trim(); state.page = 0; schedule(); });
  $('fn-sort').addEventListener('change', (e) => { state.sort = e.target.value; state.page = 0; schedule(); });
  $('fn-prev').addEventListener('click', () => { state.page = Math.max(0, state.page - 1); schedule(); });
  $('fn-next').addEventListener('click', () => { state.page++; schedule(); });

  // Workers.
  const workerRows = new Map();
  function renderWorkers() {
    const body = $('w-body');
    const ws = [...state.workers.values()].sort((a, b) => (a.row.id < b.row.id ? -1 : 1));
    setText($('w-count'), count(ws.length));
    const keep = new Set();
    ws.forEach((w, i) => {
      const r = w.row;
      keep.add(r.id);
      let row = workerRows.get(r.id);
      if (!row) {
        const fill = h('span', { class: 'fill' });
        const sp = spark(1, ['teal'], true);
        row = {
          tr: h('tr', { 'data-worker': r.id }),
          id: h('td', { class: 'l mono', text: short(r.id) }),
          st: h('td', { class: 'l' }),
          fl: h('td', { class: 'l' }),
          fill, flText: h('span'),
          rate: h('td'), spTd: h('td', { class: 'spark' }, sp.svg), sp,
          done: h('td'), warm: h('td'), rss: h('td'),
        };
        row.fl.append(h('span', { class: 'meter' }, h('span', { class: 'track' }, fill), row.flText));
        row.tr.append(row.id, row.st, row.fl, row.rate, row.spTd, row.done, row.warm, row.rss);
        workerRows.set(r.id, row);
      }
      const stale = r.seen_ms_ago > 5000;
      const st = r.draining ? 'draining' : stale ? 'stale' : 'active';
      if (row.st.dataset.v !== st) {
        row.st.dataset.v = st;
        row.st.replaceChildren(h('span', { class: 'badge ' + st, text: st }));
      }
      row.fill.style.width = (r.concurrency ? Math.min(100, (100 * r.in_flight) / r.concurrency) : 0) + '%';
      setText(row.flText, `${r.in_flight} / ${r.concurrency}`);
      setText(row.rate, num(r.rate, 1));
      drawSpark(row.sp, [w.rate]);
      setText(row.done, count(r.completed));
      setText(row.warm, count(r.warm));
      setText(row.rss, bytes(r.rss_bytes));
      row.id.title = `${r.id}, up ${r.started_at_ms ? dur(Math.max(0, state.now - r.started_at_ms)) : '?'}, last heartbeat ${dur(r.seen_ms_ago)} ago`;
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
    });
    for (const [id, row] of workerRows) if (!keep.has(id)) { row.tr.remove(); workerRows.delete(id); }
    if (!ws.length) body.replaceChildren(h('tr', {}, h('td', { class: 'l', colspan: 8, text: 'no worker has sent a heartbeat' })));
    else { const e = body.querySelector('tr:not([data-worker])'); if (e) e.remove(); }
  }

  // Runs.
  function renderRuns() {
    const box = $('runs');
    if (!state.runs.length) {
      box.replaceChildren(h('p', { class: 'empty', text: state.watched.length ? 'waiting for the first update…' : 'No runs watched yet: start one above, or paste a run id.' }));
      return;
    }
    box.replaceChildren(...state.runs.map(runCard));
  }
  function runCard(rr) {
    const label = admin && !scopeTenant ? rr.tenant + '/' + rr.id : rr.id;
    const x = h('button', { class: 'run-x', type: 'button', title: 'stop watching', 'aria-label': 'stop watching', text: '×' });
    x.addEventListener('click', () => unwatch(rr));
    if (rr.missing) {
      return h('div', { class: 'run', 'data-run': rr.id, 'data-status': 'missing' },
        h('div', { class: 'run-top' }, h('span', { class: 'badge missing', text: 'not found' }), h('span', { class: 'id mono', text: label }), h('span', { class: 'spacer' }), x));
    }
    const r = rr.run;
    const bad = r.failed + r.dead;
    const total = Math.max(1, r.total);
    const seg = (cls, n) => { const el = h('span', { class: cls, title: `${cls}: ${n}` }); el.style.width = (100 * n / total) + '%'; return el; };
    const status = r.status;
    const elapsed = (r.completed_at_ms || state.now) - r.created_at_ms;
    const card = h('div', { class: 'run', 'data-run': rr.id, 'data-status': status },
      h('div', { class: 'run-top' },
        h('span', { class: 'fn', text: r.function }),
        h('span', { class: 'badge ' + status, text: status }),
        h('span', { class: 'id mono', text: label, title: rr.id }),
        h('span', { class: 'spacer' }),
        h('span', { class: 'run-percent', 'data-percent': rr.percent, text: `${num(rr.percent, 1)}%` }),
        x),
      h('div', { class: 'progress', role: 'progressbar', 'aria-valuenow': rr.percent, 'aria-valuemin': 0, 'aria-valuemax': 100 },
        seg('ok', r.succeeded), seg('bad', bad), seg('out', r.outstanding)),
      h('div', { class: 'run-counts' },
        h('span', {}, h('b', { text: count(r.total) }), ' accepted'),
        h('span', {}, h('b', { text: count(r.succeeded) }), ' succeeded'),
        h('span', {}, h('b', { text: count(r.outstanding) }), ' outstanding'),
        h('span', { class: bad ? 'c-bad' : '' }, h('b', { text: count(bad) }), ' failed'),
        h('span', {}, status === 'running' ? 'running for ' : 'took ', h('b', { text: dur(Math.max(0, elapsed)) })),
        r.error ? h('span', { class: 'c-bad', text: r.error }) : null));
    if (rr.tree) {
      const det = h('details', { 'data-tree': rr.id });
      det.open = !state.closedTree.has(rr.id) && (state.openTree.has(rr.id) || rr === state.runs[0]);
      // Only the user's clicks count (setting `open` fires `toggle` too).
      const summary = h('summary', {}, 'tree ', h('span', { class: 'hint', text: '(first levels of follow-ups: ■ an invocation, ● its follow-ups)' }));
      summary.addEventListener('click', () => {
        if (det.open) { state.closedTree.add(rr.id); state.openTree.delete(rr.id); } else { state.openTree.add(rr.id); state.closedTree.delete(rr.id); }
      });
      det.append(summary, h('ul', { class: 'tree root' }, treeNode(rr.tree, 0)));
      card.append(det);
    }
    return card;
  }
  function nodeLine(n) {
    return h('span', { class: 'node' },
      h('span', { class: 'dot-s s-' + n.status, title: n.status }),
      h('span', { text: n.function }),
      h('span', { class: 'nid mono', text: short(n.id) }),
      n.ms !== null ? h('span', { class: 'ms', text: ms(n.ms) + ' ms' }) : null,
      n.cold ? h('span', { class: 'badge cold', text: 'cold' }) : null,
      n.attempt > 1 ? h('span', { class: 'badge retrying', text: 'attempt ' + n.attempt }) : null,
      n.follow_ups ? h('span', { class: 'ms', text: `→ ${n.follow_ups}` }) : null);
  }
  function tip(n) {
    return `${n.function} ${n.id}: ${n.status}${n.ms !== null ? ', ' + ms(n.ms) + ' ms' : ''}${n.cold ? ', cold' : ''}`;
  }
  // One node as a square and its follow-ups as dots.
  function group(n) {
    const g = h('span', { class: 'group', title: tip(n) }, h('span', { class: 'dot-s sq s-' + n.status }));
    for (const c of n.children) g.append(h('span', { class: 'dot-s s-' + c.status, title: tip(c) }));
    if (n.more) g.append(h('span', { class: 'more', text: '+' + n.more }));
    return g;
  }
  // The root and its follow-ups as lines; below those, each follow-up's
  // follow-ups as a group of status marks.
  function treeNode(n, level) {
    const li = h('li', {}, nodeLine(n));
    if (n.children.length && level >= 1) {
      const groups = h('div', { class: 'groups' }, ...n.children.map(group));
      if (n.more) groups.append(h('span', { class: 'more', text: `+${n.more} more` }));
      li.append(groups);
    } else if (n.children.length) {
      const ul = h('ul', { class: 'tree' }, ...n.children.map((c) => treeNode(c, level + 1)));
      if (n.more) ul.append(h('li', {}, h('span', { class: 'more', text: `+${n.more} more not shown` })));
      li.append(ul);
    } else if (n.more) {
      li.append(h('span', { class: 'more', text: ` (${n.more} not shown)` }));
    }
    return li;
  }
  function unwatch(rr) {
    const id = admin && !scopeTenant ? rr.tenant + '/' + rr.id : rr.id;
    state.watched = state.watched.filter((w) => w !== id && w !== rr.id);
    state.runs = state.runs.filter((r) => r !== rr);
    saveWatched();
    renderRuns();
    connect();
  }
  function watch(id) {
    id = id.trim();
    if (!id) return;
    if (admin && !scopeTenant && !id.includes('/')) {
      const t = $('acting-tenant').value.trim();
      if (!t) { runsMsg('name the run as tenant/run-id, or fill in the tenant', true); return; }
      id = t + '/' + id;
    }
    if (!state.watched.includes(id)) state.watched.unshift(id);
    state.watched = state.watched.slice(0, 20);
    saveWatched();
    connect();
  }
  function runsMsg(text, err) {
    const m = $('runs-msg');
    m.textContent = text;
    m.className = 'msg' + (err ? ' err' : text ? ' ok' : '');
  }
  if (scopeTenant) $('acting-tenant').value = scopeTenant;
  $('watch-form').addEventListener('submit', (e) => { e.preventDefault(); watch($('watch-id').value); $('watch-id').value = ''; });
  $('start-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const fn = $('start-fn').value.trim() || 'fanout';
    const branch = Number($('start-b').value);
    const depth = Number($('start-d').value);
    const tenant = admin ? $('acting-tenant').value.trim() : '';
    if (admin && !tenant) { runsMsg('the admin key starts a run for a tenant: fill in the tenant', true); return; }
    const btn = $('start-run');
    btn.disabled = true;
    runsMsg('starting…');
    try {
      const r = await api('POST', '/invoke/' + encodeURIComponent(fn), tenant, JSON.stringify({ branch, depth }), { Prefer: 'respond-async' });
      const body = await r.json().catch(() => ({}));
      if (r.status !== 202) throw new Error(body.message || `HTTP ${r.status}`);
      const expected = (Math.pow(branch, depth + 1) - 1) / Math.max(1, branch - 1);
      runsMsg(`started run ${short(body.run_id)} of ${fn} (B=${branch}, D=${depth}: ${branch === 1 ? depth + 1 : count(expected)} invocations)`);
      watch(admin && !scopeTenant ? tenant + '/' + body.run_id : body.run_id);
    } catch (err) {
      runsMsg('could not start the run: ' + err.message, true);
    } finally {
      btn.disabled = false;
    }
  });
  function api(method, path, tenant, body, extra) {
    const headers = Object.assign({}, extra || {});
    if (key) headers.Authorization = 'Bearer ' + key;
    if (admin && tenant) headers['X-Eddy-Tenant'] = tenant;
    if (body) headers['Content-Type'] = 'application/json';
    return fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit' });
  }

  // Dead letters.
  function renderDead() {
    const body = $('dl-body');
    setText($('dl-count'), count(state.last.totals.dead_letters));
    if (!state.dead.length) {
      body.replaceChildren(h('tr', {}, h('td', { class: 'l', colspan: 5, text: 'none' })));
      return;
    }
    body.replaceChildren(...state.dead.map((d) => {
      const btn = h('button', { class: 'small', type: 'button', text: 'Redrive', 'data-entry': d.entry_id });
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        btn.textContent = '…';
        try {
          const r = await api('POST', `/dead-letters/${encodeURIComponent(d.entry_id)}/redrive`, d.tenant);
          const b = await r.json().catch(() => ({}));
          if (!r.ok) throw new Error(b.message || `HTTP ${r.status}`);
          btn.textContent = 'queued';
        } catch (err) {
          btn.textContent = 'failed';
          btn.title = err.message;
          btn.disabled = false;
        }
      });
      const fn = d.function || '?';
      return h('tr', { 'data-entry': d.entry_id },
        h('td', { class: 'l', text: ago(d.at_ms), title: new Date(d.at_ms).toISOString() }),
        h('td', { class: 'l' }, admin && !scopeTenant ? h('span', { class: 'hint', text: d.tenant + '/' }) : '', fn),
        h('td', { class: 'l wrap' }, h('span', { class: 'badge ' + d.status, text: d.class || d.status }), ' ', d.error),
        h('td', { text: d.attempts === null || d.attempts === undefined ? '–' : d.attempts }),
        h('td', {}, btn));
    }));
  }

  // Schedules: the tenant's, with each one's newest firing (its run opens
  // in Runs).
  function utc(ms) { return ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '–'; }
  function renderSchedules() {
    const body = $('sc-body');
    setText($('sc-count'), scopeTenant ? count(state.schedules.length) : '');
    if (!scopeTenant) {
      body.replaceChildren(h('tr', {}, h('td', { class: 'l', colspan: 8, text: 'open one tenant\'s view to see its schedules' })));
      return;
    }
    if (!state.schedules.length) {
      body.replaceChildren(h('tr', {}, h('td', { class: 'l', colspan: 8, text: 'none (eddy schedule create)' })));
      return;
    }
    body.replaceChildren(...state.schedules.map((sc) => {
      let last = h('span', { class: 'hint', text: 'not fired yet' });
      const f = sc.last;
      if (f && f.outcome === 'enqueued') {
        const btn = h('button', { class: 'small', type: 'button', text: short(f.run_id), title: 'watch run ' + f.run_id, 'data-run': f.run_id });
        btn.addEventListener('click', () => watch(f.run_id));
        last = h('span', {}, utc(f.tick_ms) + ' ', btn);
      } else if (f) {
        last = h('span', {}, utc(f.tick_ms) + ' ', h('span', { class: 'badge failed', text: 'refused' }), ' ', f.error || '');
      }
      return h('tr', { 'data-schedule': sc.name },
        h('td', { class: 'l', text: sc.name }),
        h('td', { class: 'l mono', text: sc.cron }),
        h('td', { class: 'l', text: sc.function }),
        h('td', { class: 'l', text: utc(sc.next_ms) }),
        h('td', { text: count(sc.fired) }),
        h('td', { text: count(sc.refused) }),
        h('td', { text: count(sc.missed) }),
        h('td', { class: 'l wrap' }, last));
    }));
  }

  // Recent invocations.
  function renderInvocations() {
    const body = $('inv-body');
    if (!state.invocations.length) {
      body.replaceChildren(h('tr', {}, h('td', { class: 'l', colspan: 9, text: 'none yet: watch a run, or wait for a dead letter' })));
      return;
    }
    body.replaceChildren(...state.invocations.map((v) => {
      const tr = h('tr', { 'data-inv': v.id, class: state.invOpen === v.id ? 'sel' : '' },
        h('td', { class: 'l', text: ago(v.completed_at_ms || v.created_at_ms) }),
        h('td', { class: 'l' }, h('b', { text: v.function }), ' ', h('span', { class: 'hint mono', text: short(v.id) })),
        h('td', { class: 'l' }, h('span', { class: 'badge ' + v.status, text: v.status }), v.cold ? ' ' : '', v.cold ? h('span', { class: 'badge cold', text: 'cold' }) : ''),
        h('td', { text: v.depth }),
        h('td', { text: v.attempt }),
        h('td', { text: ms(v.ms) }),
        h('td', { text: num(v.queue_ms, 1) }),
        h('td', { class: 'l mono', text: v.worker ? short(v.worker) : '–', title: v.worker || '' }),
        h('td', { class: 'l wrap' + (v.error ? ' err' : '') },
          v.error ? `${v.error_class}: ${v.error}` : v.log ? v.log : '',
          v.logs > 1 ? h('span', { class: 'hint', text: ` (+${v.logs - 1} lines)` }) : ''));
      tr.addEventListener('click', () => openInvocation(v));
      return tr;
    }));
  }
  async function openInvocation(v) {
    state.invOpen = v.id;
    const box = $('inv-detail');
    box.hidden = false;
    box.replaceChildren(h('h3', { text: `${v.function} ${v.id}` }), h('div', { class: 'hint', text: 'loading…' }));
    renderInvocations();
    try {
      const r = await api('GET', '/invocations/' + encodeURIComponent(v.id), v.tenant);
      const rec = await r.json();
      if (!r.ok) throw new Error(rec.message || `HTTP ${r.status}`);
      const t = rec.timings || {};
      const logs = (rec.logs || []).map((l) => `[${l.level}] ${l.source}: ${l.message}`).join('\n');
      const close = h('button', { class: 'small', type: 'button', text: 'close' });
      close.addEventListener('click', () => { box.hidden = true; state.invOpen = null; renderInvocations(); });
      box.replaceChildren(...[
        h('h3', {}, `${rec.function} `, h('span', { class: 'mono hint', text: rec.id }), ' ', h('span', { class: 'badge ' + rec.status, text: rec.status }), ' ', close),
        h('div', { class: 'kv' },
          h('span', {}, 'run ', h('b', { class: 'mono', text: short(rec.run_id) })),
          h('span', {}, 'depth ', h('b', { text: rec.depth })),
          h('span', {}, 'attempt ', h('b', { text: rec.attempt })),
          h('span', {}, 'queued ', h('b', { text: num((t.queue_wait_us || 0) / 1000, 2) + ' ms' })),
          h('span', {}, 'load ', h('b', { text: num((t.load_us || 0) / 1000, 2) + ' ms' })),
          h('span', {}, 'instantiate ', h('b', { text: num((t.instantiate_us || 0) / 1000, 3) + ' ms' })),
          h('span', {}, 'run ', h('b', { text: num((t.run_us || 0) / 1000, 3) + ' ms' })),
          h('span', {}, 'cold ', h('b', { text: t.cold ? 'yes' : 'no' })),
          h('span', {}, 'follow-ups ', h('b', { text: (rec.follow_ups || []).length }))),
        rec.error ? h('pre', { text: `${rec.error.class}: ${rec.error.message}` }) : null,
        h('pre', { text: logs || '(no log lines)' }),
        rec.output !== undefined ? h('pre', { text: 'output: ' + (typeof rec.output === 'string' ? rec.output.slice(0, 2000) : JSON.stringify(rec.output).slice(0, 2000)) }) : null,
      ].filter(Boolean));
    } catch (err) {
      box.replaceChildren(h('h3', { text: v.id }), h('div', { class: 'msg err', text: 'could not read it: ' + err.message }));
    }
  }

  connect();
})();
