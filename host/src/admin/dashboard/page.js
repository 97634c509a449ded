// The live dashboard. Every second it asks the scheduler for what changed (`/history`, with cursors,
// so each answer is small) and for `/status`, then redraws. Charts are drawn by hand on <canvas>;
// nothing is loaded from anywhere but this scheduler.
//
// For tests and screenshots, what the page made of the data is written into <body data-*>:
// data-polls, data-samples, data-decisions (table rows), data-charts (per chart: the points and the
// largest value drawn, and the pixels they coloured), data-swaps (digests of the swaps seen), data-origins (every origin the page loaded from).
'use strict';

const POLL_MS = 1000;
const WINDOW_MS = 10 * 60 * 1000; // the longest span the charts show
const MIN_WINDOW_MS = 20 * 1000;
const KEEP_DECISIONS = 2000; // summaries the page keeps (marks and table)
const TABLE_ROWS = 200;
const MAX_DETAIL_CHARS = 200000;
const STATES = ['running', 'starting', 'draining'];
const PALETTE = ['#2f6fb3', '#2e9d6b', '#8e5bb5', '#c7792a', '#3aa6b9', '#b5495b', '#6d7f2c', '#5b6bc0', '#a0522d', '#4f8f8f', '#9c6b98', '#777777'];

const page = {
  samples: [], decisions: [], swaps: [], status: null,
  samplesAfter: 0, decisionsAfter: 0, omitted: 0, nowMs: Date.now(),
  selected: null, polls: 0, error: null, charts: {},
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k === 'title') node.title = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

async function getJSON(path) {
  const response = await fetch(path, { cache: 'no-store', credentials: 'same-origin' });
  if (response.status === 401) {
    location.replace('/');
    throw new Error('signed out');
  }
  if (!response.ok) throw new Error(`${path}: ${response.status} ${(await response.text()).trim()}`);
  return response.json();
}

async function poll() {
  try {
    const query = `/history?samples_after=${page.samplesAfter}&decisions_after=${page.decisionsAfter}`;
    const [history, status] = await Promise.all([getJSON(query), getJSON('/status')]);
    merge(history);
    page.status = status;
    page.error = null;
    render();
  } catch (e) {
    page.error = e.message;
    renderLive();
  } finally {
    page.polls += 1;
    report();
    setTimeout(poll, POLL_MS);
  }
}

function merge(h) {
  if (h.last_decision_seq < page.decisionsAfter) {
    // A new scheduler on the same address: start over.
    Object.assign(page, { samples: [], decisions: [], samplesAfter: 0, decisionsAfter: 0 });
  }
  page.nowMs = h.now_ms;
  page.samples.push(...h.samples);
  if (page.samples.length > 0) page.samplesAfter = page.samples[page.samples.length - 1].seq;
  const cutoff = h.now_ms - WINDOW_MS;
  while (page.samples.length > 0 && page.samples[0].time_ms < cutoff) page.samples.shift();
  page.decisions.push(...h.decisions);
  if (page.decisions.length > KEEP_DECISIONS) page.decisions.splice(0, page.decisions.length - KEEP_DECISIONS);
  page.decisionsAfter = Math.max(page.decisionsAfter, h.last_decision_seq);
  page.omitted += h.decisions_omitted;
  page.swaps = h.swaps;
  page.limits = h.limits;
  page.kept = h.kept;
}

// ---- rendering ----

function render() {
  renderLive();
  renderAlerts();
  renderCounters();
  renderCharts();
  renderDecisions();
  renderPolicy();
  renderAdapters();
  renderSwaps();
  const k = page.kept;
  $('footer').textContent = k
    ? `history: ${k.decisions} decisions (${k.records} full records, ${(k.record_bytes / 1048576).toFixed(1)} MiB) of history_decisions ${page.limits.decisions} and history_detail_mib ${page.limits.detail_mib}; samples every ${POLL_MS / 1000} s for up to 10 min`
    : '';
}

function renderLive() {
  const live = $('live');
  live.className = 'badge ' + (page.error ? 'stale' : 'live');
  live.textContent = page.error ? 'not updating' : 'live';
  live.title = page.error || `updated ${new Date().toLocaleTimeString()}`;
  const p = page.status && page.status.policy;
  if (p) $('policy-line').textContent = `${p.name} ${p.version} · ${p.digest.slice(0, 12)} · ${p.source}`;
}

function renderAlerts() {
  const s = page.status;
  const alerts = [];
  for (const d of s.diagnostics || []) {
    alerts.push(el('div', { class: 'alert' }, el('strong', {}, 'Unrunnable tasks'), d));
  }
  if (s.policy.fallback_active) {
    alerts.push(el('div', { class: 'alert' }, el('strong', {}, `Fallback deciding (${s.policy.limits.fallback || 'fallback'})`),
      s.policy.fallback_reason || 'the policy kept failing'));
  }
  const last = page.swaps[page.swaps.length - 1];
  if (last && !last.accepted) {
    alerts.push(el('div', { class: 'alert warn' }, el('strong', {}, `Last swap rejected at ${last.rejection.stage}`),
      `${last.source}: ${last.rejection.error}`));
  }
  $('alerts').replaceChildren(...alerts);
}

function renderCounters() {
  const s = page.status;
  const items = [
    ['pending', s.tasks.pending], ['running', s.tasks.running], ['done', s.tasks.done], ['failed', s.tasks.failed],
    ['workers', s.workers], ['groups starting', s.groups.starting], ['groups running', s.groups.running],
    ['groups draining', s.groups.draining], ['decisions', s.decisions.total], ['decisions failed', s.decisions.failed],
  ];
  $('counters').replaceChildren(...items.map(([label, value]) => el('div', { class: 'counter' }, el('b', {}, value), el('span', {}, label))));
}

/// The charts' time span: from the oldest sample shown (at most 10 min ago) to now.
function timeSpan() {
  const end = page.nowMs;
  const first = page.samples.length ? page.samples[0].time_ms : end;
  return [Math.min(end - MIN_WINDOW_MS, first), end];
}

function renderCharts() {
  const span = timeSpan();
  const s = page.samples;
  // Fleet: one band per adapter and state, stacked.
  const adapters = [];
  for (const sample of s) for (const f of sample.fleet) {
    const name = f.adapter === null ? '(unmanaged)' : f.adapter;
    if (!adapters.includes(name)) adapters.push(name);
  }
  const bands = [];
  adapters.forEach((name, i) => {
    for (const state of STATES) {
      bands.push({
        label: `${name} ${state}`,
        color: shade(PALETTE[i % PALETTE.length], state),
        points: s.map((x) => {
          const f = x.fleet.find((f) => (f.adapter === null ? '(unmanaged)' : f.adapter) === name);
          return [x.time_ms, f ? f.workers[state] : 0];
        }),
      });
    }
  });
  const used = bands.filter((b) => b.points.some((p) => p[1] > 0));
  chart('chart-fleet', { span, series: used.length ? used : bands.slice(0, 1), stacked: true, marks: true });
  legend('legend-fleet', used);

  const tasks = [
    { label: 'pending', color: '#c7792a', points: s.map((x) => [x.time_ms, x.pending]) },
    { label: 'running', color: '#2f6fb3', points: s.map((x) => [x.time_ms, x.running]) },
  ];
  chart('chart-tasks', { span, series: tasks });
  legend('legend-tasks', tasks);

  const rate = [];
  for (let i = 1; i < s.length; i++) {
    const dt = (s[i].time_ms - s[i - 1].time_ms) / 1000;
    const done = s[i].done + s[i].failed - s[i - 1].done - s[i - 1].failed;
    if (dt > 0) rate.push([s[i].time_ms, Math.max(0, done / dt)]);
  }
  chart('chart-rate', { span, series: [{ label: 'completed/s', color: '#2e9d6b', points: rate }] });
  const wait = s.map((x) => [x.time_ms, x.queue_wait_ms === null ? 0 : x.queue_wait_ms / 1000]);
  chart('chart-wait', { span, series: [{ label: 'queue wait (s)', color: '#b5495b', points: wait }] });
}

function shade(hex, state) {
  const n = parseInt(hex.slice(1), 16);
  let [r, g, b] = [n >> 16, (n >> 8) & 255, n & 255];
  const mix = (c, t, a) => Math.round(c + (t - c) * a);
  if (state === 'starting') [r, g, b] = [mix(r, 255, 0.55), mix(g, 255, 0.55), mix(b, 255, 0.55)];
  if (state === 'draining') [r, g, b] = [mix(r, 0, 0.45), mix(g, 0, 0.45), mix(b, 0, 0.45)];
  return `rgb(${r},${g},${b})`;
}

function legend(id, series) {
  $(id).replaceChildren(...series.map((x) => {
    const swatch = el('i');
    swatch.style.background = x.color;
    return el('span', {}, swatch, x.label);
  }));
}

/// Draws `series` (lists of [time_ms, value]) over `span`; stacked areas or lines. Reports what it
/// drew into page.charts: points, the largest value, and the pixels coloured (before axes go on top).
function chart(id, { span, series, stacked = false, marks = false }) {
  const canvas = $(id);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 180;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 44, right: 10, top: 8, bottom: marks ? 34 : 22 };
  const plot = { x: pad.left, y: pad.top, w: width - pad.left - pad.right, h: height - pad.top - pad.bottom };
  const [t0, t1] = span;
  const x = (t) => plot.x + ((t - t0) / Math.max(1, t1 - t0)) * plot.w;

  // Stacking: each band sits on the sum of those before it (all series share sample times).
  const base = [];
  const layers = series.map((s) => {
    const lower = s.points.map((p, i) => (stacked ? base[i] || 0 : 0));
    const upper = s.points.map((p, i) => lower[i] + p[1]);
    if (stacked) upper.forEach((v, i) => { base[i] = v; });
    return { ...s, lower, upper };
  });
  let largest = 0;
  for (const l of layers) for (const v of l.upper) largest = Math.max(largest, v);
  const max = niceCeiling(Math.max(1, largest));
  const y = (v) => plot.y + plot.h - (v / max) * plot.h;

  for (const l of layers) {
    if (l.points.length === 0) continue;
    ctx.beginPath();
    if (stacked) {
      l.points.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(l.upper[i])) : ctx.moveTo(x(p[0]), y(l.upper[i]))));
      for (let i = l.points.length - 1; i >= 0; i--) ctx.lineTo(x(l.points[i][0]), y(l.lower[i]));
      ctx.closePath();
      ctx.fillStyle = l.color;
      ctx.fill();
    } else {
      l.points.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
      ctx.strokeStyle = l.color;
      ctx.lineWidth = 2;
      ctx.stroke();
    }
  }
  page.charts[canvas.dataset.chart] = {
    points: layers.reduce((n, l) => n + l.points.length, 0),
    max: largest,
    pixels: countInk(ctx, plot, ratio),
  };

  // Axes and grid on top.
  const ink = getComputedStyle(document.body).color;
  ctx.fillStyle = ink;
  ctx.strokeStyle = 'rgba(128,128,128,0.35)';
  ctx.lineWidth = 1;
  ctx.font = '11px system-ui, sans-serif';
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(plot.x, yy); ctx.lineTo(plot.x + plot.w, yy); ctx.stroke();
    ctx.fillText(formatNumber(v), plot.x - 6, yy);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const step = tickStep(t1 - t0);
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    ctx.fillText(new Date(t).toLocaleTimeString([], { hour12: false }), x(t), plot.y + plot.h + (marks ? 16 : 4));
  }
  if (marks) drawMarks(ctx, plot, x, t0, t1);
}

/// Decisions as ticks under the fleet chart (green: starts, orange: shutdowns, red: failed, grey:
/// nothing to do) and swaps as dashed lines across it.
function drawMarks(ctx, plot, x, t0, t1) {
  const top = plot.y + plot.h + 2;
  for (const d of page.decisions) {
    if (d.time_ms < t0 || d.time_ms > t1) continue;
    const starts = Object.values(d.starts).reduce((a, b) => a + b, 0);
    const color = d.error_kind ? '#c0392b' : starts ? '#1f8a4c' : d.shutdowns ? '#c7792a' : 'rgba(128,128,128,0.5)';
    const tall = d.error_kind || starts || d.shutdowns ? 11 : 5;
    ctx.fillStyle = color;
    ctx.fillRect(Math.round(x(d.time_ms)), top, 2, tall);
  }
  ctx.save();
  ctx.setLineDash([4, 3]);
  for (const s of page.swaps) {
    if (s.at_ms < t0 || s.at_ms > t1) continue;
    ctx.strokeStyle = s.accepted ? '#8e5bb5' : '#c0392b';
    const xx = Math.round(x(s.at_ms)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, plot.y); ctx.lineTo(xx, plot.y + plot.h); ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText(s.accepted ? `swap: ${s.name || ''}` : `rejected: ${s.rejection.stage}`, xx + 3, plot.y + 2);
  }
  ctx.restore();
}

function countInk(ctx, plot, ratio) {
  const w = Math.max(1, Math.floor(plot.w * ratio));
  const h = Math.max(1, Math.floor(plot.h * ratio));
  const data = ctx.getImageData(Math.floor(plot.x * ratio), Math.floor(plot.y * ratio), w, h).data;
  let n = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
  return n;
}

function niceCeiling(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function tickStep(spanMs) {
  for (const s of [10e3, 15e3, 30e3, 60e3, 120e3, 300e3]) if (spanMs / s <= 6) return s;
  return 600e3;
}

function formatNumber(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + 'k';
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function formatTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false }) + '.' + String(ms % 1000).padStart(3, '0');
}

function renderDecisions() {
  const rows = page.decisions.slice(-TABLE_ROWS).reverse().map((d) => {
    const starts = Object.entries(d.starts).map(([a, n]) => `${a}×${n}`).join(' ');
    const quiet = !starts && !d.shutdowns && !d.dropped_total && !d.error_kind && !d.diagnostics_total;
    const outcome = d.error_kind
      ? el('span', { class: 'bad', title: d.error || '' }, `failed: ${d.error_kind}`)
      : el('span', { class: 'ok' }, 'ok');
    const shadow = d.shadow_agrees === undefined ? null
      : el('span', { class: d.shadow_agrees ? 'muted' : 'warn' }, d.shadow_agrees ? ' · shadow agrees' : ' · shadow differs');
    const dropped = d.dropped_total
      ? el('span', { class: 'warn', title: d.dropped.map((x) => `${x.command}: ${x.reason}`).join('\n') }, `${d.dropped_total}: ${d.dropped[0].reason}`)
      : '';
    const diagnostics = d.diagnostics.map((x) => `${x.code}: ${x.message}`).join('; ') + (d.diagnostics_total > d.diagnostics.length ? ' …' : '');
    const row = el('tr', {
      class: [d.error_kind ? 'failed' : '', quiet ? 'quiet' : '', d.seq === page.selected ? 'selected' : ''].join(' ').trim(),
      'data-seq': d.seq,
      onclick: () => select(d.seq),
    },
    el('td', {}, d.seq), el('td', {}, formatTime(d.time_ms)), el('td', {}, d.trigger),
    el('td', {}, d.duration_us >= 1000 ? `${(d.duration_us / 1000).toFixed(1)} ms` : `${d.duration_us} µs`),
    el('td', {}, starts), el('td', {}, d.shutdowns || ''), el('td', {}, dropped), el('td', {}, diagnostics),
    el('td', { class: 'mono', title: d.policy_source }, d.policy_digest.slice(0, 12)),
    el('td', {}, outcome, shadow));
    return row;
  });
  $('decisions').tBodies[0].replaceChildren(...rows);
  const shown = Math.min(page.decisions.length, TABLE_ROWS);
  $('decisions-note').textContent = `(newest ${shown}${page.omitted ? `; ${page.omitted} skipped while catching up` : ''}; click a row for its snapshot and commands)`;
}

async function select(seq) {
  page.selected = seq;
  history.replaceState(null, '', `#decision=${seq}`);
  const detail = $('detail');
  detail.hidden = false;
  detail.replaceChildren(el('p', { class: 'muted' }, `loading decision ${seq}…`));
  renderDecisions();
  try {
    const response = await fetch(`/decision/${seq}`, { cache: 'no-store', credentials: 'same-origin' });
    const text = await response.text();
    if (!response.ok) throw new Error(text);
    showDetail(JSON.parse(text), text);
  } catch (e) {
    detail.replaceChildren(el('p', { class: 'bad' }, e.message));
  }
}

function showDetail(r, text) {
  const snap = r.snapshot;
  const name = (id) => snap.names[id] ?? '?';
  const caps = (set) => (snap.capability_sets[set] || []).map((c) => (c.value === -1 ? name(c.name) : `${name(c.name)}=${c.value}`)).join(',') || '{}';
  const command = (c) => (c.start ? `start(${c.start.adapter}, ${JSON.stringify(c.start.capabilities)})` : `shutdown(${c.shutdown})`);
  const byState = {};
  for (const g of snap.worker_groups) byState[g.state] = (byState[g.state] || 0) + 1;
  const shown = text.length > MAX_DETAIL_CHARS ? text.slice(0, MAX_DETAIL_CHARS) + '\n… (cut; the whole record is at /decision/' + r.seq + ')' : JSON.stringify(r, null, 1);
  $('detail').replaceChildren(
    el('h2', {}, `Decision ${r.seq}`, el('span', { class: 'muted' }, ` ${r.trigger} · ${formatTime(r.time_ms)} · ${r.duration_us} µs · ${r.policy_source} ${r.policy_digest.slice(0, 12)}`)),
    r.error ? el('p', { class: 'bad' }, r.error) : null,
    el('dl', {},
      el('dt', {}, 'commands'), el('dd', { class: 'mono' }, r.commands.map(command).join('  ') || 'none'),
      el('dt', {}, 'dropped'), el('dd', {}, r.dropped.map((d) => `${command(d.command)}: ${d.reason}`).join('; ') || 'none'),
      el('dt', {}, 'diagnostics'), el('dd', {}, r.diagnostics.map((d) => `${d.code}: ${d.message}`).join('; ') || 'none'),
      el('dt', {}, 'params'), el('dd', { class: 'mono' }, JSON.stringify(r.params)),
      el('dt', {}, 'adapters'), el('dd', {}, snap.adapters.map((a) => `${name(a.id)} (max ${a.max_worker_groups || '∞'} × ${a.workers_per_group}${a.capabilities === null ? '' : `, ${caps(a.capabilities)}`})`).join('; ') || 'none'),
      el('dt', {}, 'task groups'), el('dd', {}, snap.task_groups.map((t) => `${caps(t.capabilities)}: ${t.pending} pending, ${t.running} running`).join('; ') || 'none'),
      el('dt', {}, 'worker groups'), el('dd', {}, `${snap.worker_groups.length} (${Object.entries(byState).map(([k, v]) => `${v} ${k}`).join(', ') || 'none'})`),
      el('dt', {}, 'misses'), el('dd', {}, snap.misses.map((m) => `${name(m.adapter)}: ${m.count}`).join('; ') || 'none'),
      r.shadow ? [el('dt', {}, 'shadow'), el('dd', {}, `${r.shadow.agrees ? 'agrees' : 'differs'}: ${r.shadow.commands.map(command).join('  ') || 'no commands'}${r.shadow.error ? ` (${r.shadow.error})` : ''}`)] : null,
    ),
    el('details', {}, el('summary', {}, 'the whole record (snapshot, state, commands), as in the decision log'), el('pre', {}, shown)),
  );
}

function renderPolicy() {
  const s = page.status;
  const p = s.policy;
  const shadow = s.shadow;
  const agreement = shadow && shadow.equal + shadow.different > 0
    ? `${((100 * shadow.equal) / (shadow.equal + shadow.different)).toFixed(1)}% agree (${shadow.equal} equal, ${shadow.different} different, ${shadow.failed} failed, ${shadow.skipped} skipped)`
    : 'no comparisons yet';
  $('policy').replaceChildren(el('dl', {},
    el('dt', {}, 'name'), el('dd', {}, `${p.name} ${p.version}`),
    el('dt', {}, 'digest'), el('dd', { class: 'mono' }, p.digest),
    el('dt', {}, 'source'), el('dd', {}, p.source),
    el('dt', {}, 'params'), el('dd', { class: 'mono' }, JSON.stringify(p.params)),
    el('dt', {}, 'limits'), el('dd', { class: 'mono' }, JSON.stringify(p.limits)),
    el('dt', {}, 'loaded'), el('dd', {}, new Date(p.loaded_at).toLocaleString()),
    el('dt', {}, 'fallback'), el('dd', { class: p.fallback_active ? 'bad' : '' }, p.fallback_active ? `deciding: ${p.fallback_reason || ''}` : 'standing by'),
    el('dt', {}, 'shadow'), el('dd', {}, shadow ? `${shadow.name} ${shadow.digest.slice(0, 12)} (${shadow.source}): ${agreement}` : 'none configured'),
    el('dt', {}, 'swaps'), el('dd', {}, `${s.swaps.accepted} accepted, ${s.swaps.rejected} rejected`),
  ));
}

function renderAdapters() {
  const s = page.status;
  const latest = page.samples[page.samples.length - 1];
  const fleet = latest ? latest.fleet : [];
  const counts = (name) => fleet.find((f) => f.adapter === name) || null;
  const groups = (f) => (f ? `${f.groups.starting} / ${f.groups.running} / ${f.groups.draining}` : '');
  const workers = (f) => (f ? f.workers.starting + f.workers.running + f.workers.draining : '');
  const rows = s.adapters.map((a) => {
    const f = counts(a.id);
    return el('tr', {}, el('td', {}, a.id), el('td', {}, `${a.groups} of ${a.max_worker_groups || '∞'}`), el('td', {}, a.workers_per_group),
      el('td', {}, a.capabilities || 'any'), el('td', {}, a.priority), el('td', {}, groups(f)), el('td', {}, workers(f)));
  });
  const unmanaged = counts(null);
  if (unmanaged) rows.push(el('tr', {}, el('td', {}, '(unmanaged)'), el('td', {}, ''), el('td', {}, ''), el('td', {}, ''), el('td', {}, ''), el('td', {}, groups(unmanaged)), el('td', {}, workers(unmanaged))));
  $('adapters').replaceChildren(
    el('table', {}, el('thead', {}, el('tr', {}, ['adapter', 'groups', 'per group', 'capabilities', 'priority', 'start/run/drain', 'workers'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'no adapter connected')))),
    el('p', { class: 'muted' }, `${s.workers} workers connected; ${s.groups.starting + s.groups.running + s.groups.draining} groups live`),
  );
}

function renderSwaps() {
  const rows = page.swaps.slice().reverse().map((w) => el('tr', {},
    el('td', {}, formatTime(w.at_ms)), el('td', {}, w.trigger), el('td', {}, w.source),
    el('td', { class: w.accepted ? 'ok' : 'bad' }, w.accepted ? `installed ${w.name || ''} ${(w.digest || '').slice(0, 12)}` : `rejected at ${w.rejection.stage}: ${w.rejection.error}`),
    el('td', {}, `${w.duration_ms.toFixed(0)} ms`)));
  $('swaps').replaceChildren(rows.length
    ? el('table', {}, el('thead', {}, el('tr', {}, ['time', 'trigger', 'source', 'outcome', 'took'].map((h) => el('th', {}, h)))), el('tbody', {}, rows))
    : el('p', { class: 'muted' }, 'no swap since start'));
}

/// What the page made of the data, for tests: see the comment at the top.
function report() {
  const b = document.body.dataset;
  b.polls = page.polls;
  b.samples = page.samples.length;
  b.decisions = $('decisions').tBodies[0].rows.length;
  b.charts = JSON.stringify(page.charts);
  b.swaps = JSON.stringify(page.swaps.map((s) => ({ accepted: s.accepted, digest: s.digest || null })));
  const origins = new Set([location.origin]);
  for (const e of performance.getEntriesByType('resource')) origins.add(new URL(e.name).origin);
  b.origins = JSON.stringify([...origins]);
  b.error = page.error || '';
}

// `#decision=SEQ` opens that decision, as a click on its row would: a link to share.
const linked = location.hash.match(/^#decision=(\d+)$/);
if (linked) select(Number(linked[1]));
poll();
