// The Troupe dashboard page: polls /dashboard/api/cluster and /dashboard/api/series once a second
// and draws the panels; #/type/<type> and #/actor/<id> open the drill-down (read-only).

import uPlot from '/dashboard/vendor/uPlot.esm.js';

const POLL_MS = 1000;
const HISTORY_MS = 15 * 60 * 1000;
const COLOURS = ['#e69f00', '#56b4e9', '#009e73', '#f0e442', '#0072b2', '#d55e00', '#cc79a7', '#b0b0b0'];

const $ = (id) => document.getElementById(id);

/** Builds an element; attributes starting with "on" are listeners; children are nodes or text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const int = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const dec = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });
function num(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return '–';
  return Math.abs(v) >= 100 || Number.isInteger(v) ? int.format(v) : dec.format(v);
}
function ms(v) {
  if (v === undefined || v === null) return '–';
  if (v < 0.01) return `${dec.format(v * 1000)} µs`;
  if (v < 1000) return `${v < 10 ? v.toFixed(2) : dec.format(v)} ms`;
  return `${dec.format(v / 1000)} s`;
}
function bytes(v) {
  if (v === undefined) return '–';
  return v >= 1 << 30 ? `${(v / 2 ** 30).toFixed(2)} GiB` : `${dec.format(v / 2 ** 20)} MiB`;
}
function ago(msSpan) {
  if (msSpan === undefined) return '–';
  const s = Math.floor(msSpan / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
const clock = (t) => new Date(t).toLocaleTimeString('en-GB', { hour12: false });
const nodeColour = (n) => COLOURS[labelIndex(n.label) % 8];
/** A, B, … Z, AA, AB: the node's label back to its index. */
function labelIndex(label) {
  let i = 0;
  for (const ch of label) i = i * 26 + (ch.charCodeAt(0) - 64);
  return i - 1;
}
const ownerClass = (i) => `o${i % 8} p${Math.floor(i / 8) % 8}`;

let view;
let failures = 0;

class FetchError extends Error {}

async function getJson(path) {
  let res;
  try {
    res = await fetch(path, { cache: 'no-store' });
  } catch (err) {
    throw new FetchError(`${path}: ${err.message}`);
  }
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new FetchError(body.error ?? `HTTP ${res.status}`);
  return body;
}

// ---- header -------------------------------------------------------------------------------------

function drawHeader() {
  $('cluster-name').textContent = view.cluster ? `cluster “${view.cluster}”` : 'embedded node (no cluster)';
  $('self-name').textContent = view.self;
  const served = view.owner.filter((o) => o >= 0).length;
  const up = view.nodes.filter((n) => n.status === 'up').length;
  const items = [
    ['nodes', `${up}/${view.nodes.length} up`],
    ['partitions served', `${int.format(served)}/${int.format(view.partitions)}`],
    ['turns/s', num(view.totals.turnsPerSecond)],
    ['activations', num(view.totals.activations)],
    ['failed turns', num(view.totals.failed)],
  ];
  $('headline').replaceChildren(...items.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));
  document.title = `Troupe · ${view.cluster || view.self} · ${up}/${view.nodes.length} up`;
}

// ---- nodes --------------------------------------------------------------------------------------

const nodeById = () => new Map((view?.nodes ?? []).map((n) => [n.nodeId, n]));

function drawNodes() {
  const byId = nodeById();
  const head = h('thead', {}, h('tr', {}, ['node', 'health', 'uptime', 'CPU', 'memory', 'shards', 'partitions', 'turns/s', 'links to peers'].map((t, i) => h('th', { scope: 'col', class: i >= 2 && i <= 7 ? 'num' : undefined }, t))));
  const rows = view.nodes.map((n) => {
    const health = n.status.replace(' ', '-');
    const cpu = n.cpuPercent;
    return h(
      'tr',
      { 'data-node': n.nodeId },
      h('td', { class: 'name' }, h('span', { class: `chip ${ownerClass(labelIndex(n.label))}`, 'aria-hidden': 'true' }, n.label), n.nodeId, h('div', { class: 'sub' }, n.address || '', n.nodeId === view.self ? ' · this node' : '', n.inspector ? ` · inspector ${n.inspector}` : '')),
      h('td', {}, h('span', { class: `health ${health}` }, n.status), n.detail ? h('div', { class: 'sub', title: n.detail }, n.detail.length > 60 ? `${n.detail.slice(0, 60)}…` : n.detail) : null),
      h('td', { class: 'num' }, ago(n.uptimeMs)),
      h('td', { class: 'num' }, cpu === undefined ? '–' : `${dec.format(cpu)}%`, cpu === undefined ? null : h('div', { class: `bar${cpu > 80 ? ' hot' : ''}` }, barSpan(Math.min(100, cpu)))),
      h('td', { class: 'num' }, bytes(n.rssBytes), h('div', { class: 'sub' }, n.heapUsedBytes === undefined ? '' : `heap ${bytes(n.heapUsedBytes)}`)),
      h('td', { class: 'num' }, num(n.shards)),
      h('td', { class: 'num', 'data-serving': n.serving }, int.format(n.serving), n.acquiring || n.releasing ? h('div', { class: 'sub warn' }, `+${n.acquiring} acquiring, ${n.releasing} releasing`) : h('div', { class: 'sub' }, n.leasesHeld === undefined ? '' : `${int.format(n.leasesHeld)} leases`)),
      h('td', { class: 'num' }, num(n.turnsPerSecond)),
      h('td', {}, h('div', { class: 'links' }, n.links.length === 0 ? h('span', { class: 'sub' }, view.nodes.length > 1 ? 'none yet' : 'alone') : n.links.map((l) => {
        const peer = byId.get(l.peer);
        return h('span', { class: `link ${l.connected ? 'on' : 'off'}`, title: `${l.peer}: ${l.connected ? 'connected' : 'not connected'}; ${l.queuedFrames} frames queued, ${l.stalls} stalls` }, peer ? peer.label : l.peer.slice(0, 8), l.queuedFrames ? ` (${l.queuedFrames} queued)` : '');
      }))),
    );
  });
  $('nodes-table').replaceChildren(h('caption', { class: 'sr' }, 'Nodes of the cluster'), head, h('tbody', {}, rows));
}

function barSpan(pct) {
  const s = h('span');
  s.style.width = `${pct}%`;
  return s;
}

// ---- partitions ---------------------------------------------------------------------------------

let cells = [];
let lastOwner = [];
function drawPartitions() {
  const map = $('partition-map');
  if (cells.length !== view.partitions) {
    cells = [];
    const frag = document.createDocumentFragment();
    for (let p = 0; p < view.partitions; p++) {
      const c = h('div', { class: 'cell', 'data-partition': p });
      cells.push(c);
      frag.append(c);
    }
    map.replaceChildren(frag);
    map.style.gridTemplateColumns = `repeat(${Math.ceil(Math.sqrt(view.partitions))}, minmax(0, 1fr))`;
    lastOwner = [];
  }
  const counts = new Map();
  let none = 0;
  let moving = 0;
  for (let p = 0; p < view.partitions; p++) {
    const o = view.owner[p];
    const node = o >= 0 ? view.nodes[o] : undefined;
    const key = node ? node.nodeId : '';
    const mv = view.moving[p];
    if (node) counts.set(node.nodeId, (counts.get(node.nodeId) ?? 0) + 1);
    else none++;
    if (mv) moving++;
    const c = cells[p];
    const changed = lastOwner.length > 0 && lastOwner[p] !== key;
    const cls = `cell ${node ? ownerClass(labelIndex(node.label)) : 'none'}${mv ? ' moving' : ''}${changed ? ' changed' : ''}`;
    if (c.className !== cls || changed) {
      if (changed) {
        c.className = cls.replace(' changed', '');
        void c.offsetWidth; // restarts the flash
      }
      c.className = cls;
      c.textContent = node ? node.label : '·';
      c.dataset.owner = key;
      c.title = `partition ${p}: ${node ? `served by ${node.nodeId} (${node.label})` : 'served by no node'}${mv === 1 ? ', being acquired' : mv === 2 ? ', being released (hand-off)' : ''}`;
    }
    lastOwner[p] = key;
  }
  $('partition-legend').replaceChildren(
    ...[...view.nodes.map((n) => h('li', { 'data-node': n.nodeId }, h('span', { class: `swatch ${ownerClass(labelIndex(n.label))}`, 'aria-hidden': 'true' }, n.label), n.nodeId, h('span', { class: 'count' }, `${int.format(counts.get(n.nodeId) ?? 0)}`))),
    none ? h('li', {}, h('span', { class: 'swatch cell none', 'aria-hidden': 'true' }, '·'), 'served by no node', h('span', { class: 'count' }, int.format(none))) : null].filter(Boolean),
  );
  $('partitions-summary').textContent = `${int.format(view.partitions)} partitions · ${int.format(view.partitions - none)} served${moving ? ` · ${moving} moving` : ''}${none ? ` · ${none} unserved` : ''}`;
  $('partition-map').setAttribute('aria-label', `Partition map: ${view.nodes.map((n) => `${n.label} ${n.nodeId} ${counts.get(n.nodeId) ?? 0}`).join(', ')}${none ? `, ${none} served by no node` : ''}`);
}

// ---- series -------------------------------------------------------------------------------------

const history = { t: [], series: new Map() };
let lastT = 0;
const charts = new Map();

function mergeSeries(chunk) {
  const n = history.t.length;
  for (const t of chunk.t) history.t.push(t / 1000);
  for (const [k, vals] of Object.entries(chunk.series)) {
    let arr = history.series.get(k);
    if (!arr) history.series.set(k, (arr = new Array(n).fill(null)));
    arr.push(...vals);
  }
  for (const arr of history.series.values()) while (arr.length < history.t.length) arr.push(null);
  const cut = Date.now() / 1000 - HISTORY_MS / 1000;
  let drop = 0;
  while (drop < history.t.length && history.t[drop] < cut) drop++;
  if (drop) {
    history.t.splice(0, drop);
    for (const arr of history.series.values()) arr.splice(0, drop);
  }
  if (chunk.t.length) lastT = chunk.t[chunk.t.length - 1];
}

/** The charts: [title, series keys, labels, format]. */
function chartSpecs() {
  const nodes = view.nodes;
  const specs = [
    { id: 'turns', title: 'turns/s, cluster and per node', keys: ['turns/s', ...nodes.map((n) => `turns/s ${n.nodeId}`)], labels: ['cluster', ...nodes.map((n) => n.label)], colours: ['#ffffff', ...nodes.map(nodeColour)], fmt: num },
    { id: 'cpu', title: 'CPU % per node', keys: nodes.map((n) => `cpu% ${n.nodeId}`), labels: nodes.map((n) => n.label), colours: nodes.map(nodeColour), fmt: (v) => `${dec.format(v)}%` },
    { id: 'activations', title: 'live activations', keys: ['activations'], labels: ['actors'], colours: [COLOURS[1]], fmt: num },
  ];
  for (const s of view.services) {
    const rated = s.figures.filter((f) => f.kind === 'count').slice(0, 4);
    const levels = s.figures.filter((f) => f.kind === 'gauge' && !f.unit).slice(0, 3);
    if (levels.length) specs.push({ id: `svc-${s.name}-levels`, title: `${s.name}: now`, keys: levels.map((f) => `${s.name} ${f.name}`), labels: levels.map((f) => f.name), colours: levels.map((f, i) => COLOURS[(i + 4) % 8]), fmt: num });
    if (rated.length) specs.push({ id: `svc-${s.name}`, title: `${s.name}: per second`, keys: rated.map((f) => `${s.name} ${f.name}`), labels: rated.map((f) => f.name), colours: rated.map((f, i) => COLOURS[(i + 1) % 8]), fmt: num });
  }
  return specs;
}

function drawCharts() {
  const box = $('charts');
  const specs = chartSpecs();
  const wanted = new Set(specs.map((s) => s.id));
  for (const [id, c] of charts) if (!wanted.has(id)) { c.plot.destroy(); c.el.remove(); charts.delete(id); }
  for (const spec of specs) {
    const sig = spec.keys.join('|');
    let c = charts.get(spec.id);
    if (c && c.sig !== sig) { c.plot.destroy(); c.el.remove(); charts.delete(spec.id); c = undefined; }
    const data = [history.t, ...spec.keys.map((k) => history.series.get(k) ?? new Array(history.t.length).fill(null))];
    const latest = data[1]?.findLast((v) => v !== null && v !== undefined);
    if (!c) {
      const now = h('span', { class: 'now' });
      const el = h('figure', { class: 'chart', 'data-chart': spec.id, 'aria-label': spec.title }, h('h3', {}, spec.title, now));
      el.style.margin = '0';
      box.append(el);
      const width = Math.max(240, el.clientWidth - 16);
      const plot = new uPlot(
        {
          width, height: 120,
          cursor: { drag: { x: false, y: false } },
          legend: { show: spec.keys.length > 1 },
          scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
          axes: [
            { stroke: '#8595a6', grid: { stroke: '#2a3541', width: 1 }, ticks: { stroke: '#2a3541' }, size: 26, font: '10px system-ui' },
            { stroke: '#8595a6', grid: { stroke: '#2a3541', width: 1 }, ticks: { stroke: '#2a3541' }, size: 44, font: '10px system-ui', values: (u, vals) => vals.map((v) => (v >= 1000 ? `${dec.format(v / 1000)}k` : dec.format(v))) },
          ],
          series: [{}, ...spec.labels.map((label, i) => ({ label, stroke: spec.colours[i], width: 1.5, spanGaps: false, value: (u, v) => (v === null || v === undefined ? '–' : spec.fmt(v)) }))],
        },
        data,
        el,
      );
      c = { el, plot, now, sig };
      charts.set(spec.id, c);
    } else c.plot.setData(data);
    c.now.textContent = latest === undefined ? '' : spec.fmt(latest);
  }
  // Charts made again (a node left, say) keep their place in the order of the specs.
  specs.forEach((spec, i) => {
    const el = charts.get(spec.id).el;
    if (box.children[i] !== el) box.insertBefore(el, box.children[i] ?? null);
  });
  $('charts-hint').textContent = `since ${clock(view.watchingSinceMs)} · kept in memory while someone watches, 15 minutes at most`;
}

// ---- types --------------------------------------------------------------------------------------

function drawTypes() {
  const cols = ['type', 'activations', 'turns/s', 'p50', 'p99', 'turns', 'failed', 'overloaded', 'passivated'];
  const head = h('thead', {}, h('tr', {}, cols.map((t, i) => h('th', { scope: 'col', class: i ? 'num' : undefined }, t))));
  const byId = nodeById();
  const rows = view.types.map((t) =>
    h(
      'tr',
      { 'data-type': t.type },
      h('td', {}, h('a', { class: 'type-link', href: `#/type/${encodeURIComponent(t.type)}`, 'aria-label': `${t.type}: list its live actors` }, t.type),
        h('div', { class: 'sub' }, Object.entries(t.byNode).filter(([, v]) => v > 0).map(([id, v]) => `${byId.get(id)?.label ?? id} ${num(v)}/s`).join(' · '))),
      h('td', { class: 'num', 'data-field': 'activations' }, num(t.activations)),
      h('td', { class: 'num', 'data-field': 'turnsPerSecond' }, num(t.turnsPerSecond)),
      h('td', { class: 'num', title: `${t.timedInWindow} turns timed in the last 10 s (one in eight)` }, ms(t.p50Ms)),
      h('td', { class: 'num' }, ms(t.p99Ms)),
      h('td', { class: 'num', 'data-field': 'turns' }, num(t.turns)),
      h('td', { class: `num${t.failed ? ' bad' : ''}`, 'data-field': 'failed' }, num(t.failed)),
      h('td', { class: `num${t.overloaded ? ' warn' : ''}`, 'data-field': 'overloaded' }, num(t.overloaded)),
      h('td', { class: 'num', 'data-field': 'passivated' }, num(t.passivated)),
    ),
  );
  $('types-table').replaceChildren(h('caption', { class: 'sr' }, 'Actor types'), head, h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: cols.length, class: 'sub' }, 'no actor types on these nodes'))));
}

// ---- services -----------------------------------------------------------------------------------

function drawServices() {
  const cards = view.services.map((s) =>
    h(
      'article',
      { class: 'service', 'data-service': s.name, 'aria-label': `service ${s.name}` },
      h('h3', {}, s.name, h('span', { class: 'sub' }, `${s.nodes.length} node${s.nodes.length === 1 ? '' : 's'}`)),
      h('dl', {}, s.figures.map((f) => [
        h('dt', {}, f.name),
        h('dd', { 'data-figure': f.name }, `${num(f.value)}${f.unit ? ` ${f.unit}` : ''}`, f.kind === 'count' ? h('span', { class: 'rate' }, f.perSecond === undefined ? '' : `${num(f.perSecond)}/s`) : null),
      ])),
      s.errors.length ? h('div', { class: 'sub bad' }, s.errors.join('; ')) : null,
    ),
  );
  $('services').replaceChildren(...(cards.length ? cards : [h('p', { class: 'sub' }, 'no services run on these nodes')]));
}

// ---- events -------------------------------------------------------------------------------------

function drawEvents() {
  $('event-log').replaceChildren(...view.log.slice(0, 200).map((e) => h('li', { 'data-kind': e.kind }, h('time', { datetime: new Date(e.atMs).toISOString() }, clock(e.atMs)), h('span', { class: `kind ${e.kind}` }, e.kind), h('span', {}, e.text))));
}

// ---- drill-down: a type's live actors, then one actor's state -----------------------------------

const drill = { type: undefined, actors: [], filter: '', sort: 'key', dir: 1, actor: undefined, problems: [] };

async function openType(type, actorId) {
  const section = $('drill');
  section.hidden = false;
  $('drill-title').textContent = `Live ${type} actors`;
  if (drill.type !== type) {
    drill.type = type;
    drill.filter = '';
    drill.actors = [];
    renderDrill(true);
    await loadActors();
  }
  drill.actor = actorId;
  renderState();
}

async function loadActors() {
  try {
    const params = new URLSearchParams({ type: drill.type, key: drill.filter, limit: '500' });
    const res = await getJson(`/dashboard/api/actors?${params}`);
    drill.actors = res.actors;
    drill.problems = res.problems;
    drill.more = res.more;
  } catch (err) {
    drill.actors = [];
    drill.problems = [err.message];
  }
  renderDrill(false);
}

let filterTimer;
function renderDrill(fresh) {
  const body = $('drill-body');
  if (fresh || !body.querySelector('.cols')) {
    const input = h('input', { type: 'search', id: 'actor-filter', placeholder: 'filter by key', 'aria-label': 'Filter actors by key', value: drill.filter });
    input.addEventListener('input', () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(() => { drill.filter = input.value; void loadActors(); }, 250);
    });
    body.replaceChildren(
      h('div', { class: 'drill-tools' }, input, h('button', { type: 'button', class: 'sort', onclick: () => void loadActors() }, '↻ refresh'), h('span', { id: 'actor-count', class: 'sub' })),
      h('div', { class: 'cols' }, h('div', { class: 'actor-list' }, h('table', { id: 'actor-table' })), h('div', { id: 'actor-state' }, h('p', { class: 'sub' }, 'Choose an actor to see its state.'))),
    );
  }
  const sorted = [...drill.actors].sort((a, b) => drill.dir * (drill.sort === 'node' ? a.node.localeCompare(b.node) || a.key.localeCompare(b.key) : a.key.localeCompare(b.key, 'en', { numeric: true })));
  const byId = nodeById();
  const sortButton = (col, label) => h('button', { type: 'button', class: 'sort', 'aria-sort': drill.sort === col ? (drill.dir > 0 ? 'ascending' : 'descending') : undefined, onclick: () => { drill.dir = drill.sort === col ? -drill.dir : 1; drill.sort = col; renderDrill(false); } }, label);
  $('actor-table').replaceChildren(
    h('caption', { class: 'sr' }, `Live ${drill.type} actors`),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, sortButton('key', 'key')), h('th', { scope: 'col' }, sortButton('node', 'node')))),
    h('tbody', {}, sorted.map((a) => h('tr', { 'data-actor': a.id }, h('td', { class: 'name' }, h('a', { href: `#/actor/${encodeURIComponent(a.id)}`, 'aria-current': drill.actor === a.id ? 'true' : undefined }, a.key)), h('td', { class: 'name' }, byId.get(a.node)?.label ?? '', ' ', a.node)))),
  );
  $('actor-count').textContent = `${drill.actors.length} live actor${drill.actors.length === 1 ? '' : 's'}${drill.more ? ' (more not listed: filter by key)' : ''}${drill.problems.length ? ` · ${drill.problems.join('; ')}` : ''}`;
}

async function renderState() {
  const box = $('actor-state');
  if (!box) return;
  if (!drill.actor) return;
  box.replaceChildren(h('p', { class: 'sub' }, `reading ${drill.actor}…`));
  try {
    const s = await getJson(`/dashboard/api/state?id=${encodeURIComponent(drill.actor)}`);
    let pretty = s.json;
    try { pretty = JSON.stringify(JSON.parse(s.json), null, 2); } catch { /* shown as it came */ }
    box.replaceChildren(
      h('h3', { class: 'name' }, s.id),
      h('div', { class: 'state-meta' },
        h('span', {}, `node ${s.nodeId}`), h('span', {}, `partition ${s.partition}, shard ${s.shard}`), h('span', {}, s.storage),
        h('span', {}, s.found === 'active' ? `live · ${s.waiting} waiting${s.busy ? ' · busy' : ''} · ${s.timers} timers` : s.found === 'stored' ? 'passivated: its last committed snapshot' : 'not found (passivated volatile actors keep no state)'),
        s.truncated ? h('span', { class: 'warn' }, 'cut to 64 KiB') : null),
      h('pre', { class: 'state', id: 'state-json', tabindex: '0', 'aria-label': `state of ${s.id}` }, s.found === 'none' ? '(no state)' : pretty),
    );
  } catch (err) {
    box.replaceChildren(h('p', { class: 'bad' }, err.message));
  }
}

function route() {
  const m = /^#\/(type|actor)\/(.+)$/.exec(location.hash);
  if (!m) {
    $('drill').hidden = true;
    drill.type = undefined;
    return;
  }
  const value = decodeURIComponent(m[2]);
  if (m[1] === 'type') void openType(value, undefined);
  else void openType(value.slice(0, value.indexOf('/')), value);
}

// ---- the loop -----------------------------------------------------------------------------------

async function tick() {
  try {
    const [v, chunk] = await Promise.all([getJson('/dashboard/api/cluster'), getJson(`/dashboard/api/series?since=${lastT}`)]);
    view = v;
    mergeSeries(chunk);
    failures = 0;
    $('problem').hidden = true;
    drawHeader();
    drawNodes();
    drawPartitions();
    drawTypes();
    drawServices();
    drawEvents();
    drawCharts();
    const live = $('live');
    live.className = 'live ok';
    live.textContent = `live · ${clock(view.atMs)}`;
    document.body.dataset.ready = 'true';
  } catch (err) {
    // A fault of the page itself is loud; a node that does not answer is shown, and retried.
    if (!(err instanceof FetchError)) console.error(err);
    failures++;
    const live = $('live');
    live.className = 'live stale';
    live.textContent = `no answer (${failures})`;
    if (failures >= 3) {
      const p = $('problem');
      p.hidden = false;
      p.textContent = `The node does not answer: ${err.message}. Still trying every second.`;
    }
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

window.addEventListener('hashchange', route);
route();
void tick();
