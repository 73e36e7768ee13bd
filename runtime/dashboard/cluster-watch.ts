// The cluster as the dashboard shows it: while someone watches, once a second, this node's report
// and every member's (over their ops ports), merged into one view; rates from successive reports,
// 15 minutes of series kept in memory, and a log of what changed (joins, leaves, deaths, hand-offs,
// lease losses, overloads). It starts on the first request and stops a while after the last.

import { mergeTallies, quantileMs, type TypeTallySnapshot } from '../turn-tally.js';
import type { NodeReport } from './node-report.js';
import type { PeerSource } from './peer-reports.js';

export interface ClusterWatchOptions {
  self: string;
  /** This node's report, built on demand. */
  local: () => Promise<NodeReport>;
  peers: PeerSource;
  /** Between samples; default 1000 ms. */
  intervalMs?: number;
  /** Sampling stops this long after the last request; default 30 s. */
  idleStopMs?: number;
  /** How far back series go; default 15 minutes. */
  historyMs?: number;
  onActive?: (active: boolean) => void;
  now?: () => number;
}

export interface LinkRow {
  peer: string;
  connected: boolean;
  queuedFrames: number;
  stalls: number;
}

export interface NodeRow {
  nodeId: string;
  /** A for the first node by id, B for the next: the label of its partitions on the map. */
  label: string;
  address: string;
  opsUrl?: string;
  status: 'up' | 'not ready' | 'unreachable';
  detail?: string;
  uptimeMs?: number;
  cpuPercent?: number;
  rssBytes?: number;
  heapUsedBytes?: number;
  shards?: number;
  serving: number;
  acquiring: number;
  releasing: number;
  leasesHeld?: number;
  ringEpoch?: number;
  turnsPerSecond?: number;
  turnsTotal?: number;
  activations?: number;
  inspector?: string;
  links: LinkRow[];
}

export interface TypeRow {
  type: string;
  activations: number;
  turns: number;
  turnsPerSecond: number;
  p50Ms?: number;
  p99Ms?: number;
  /** Turns timed in the window the percentiles cover. */
  timedInWindow: number;
  failed: number;
  overloaded: number;
  passivated: number;
  activated: number;
  /** Turns per second per node, by node id: where the turns ran. */
  byNode: Record<string, number>;
}

export interface FigureRow {
  name: string;
  kind: 'count' | 'gauge';
  unit?: string;
  value: number;
  /** Counts: per second, over the last sample. */
  perSecond?: number;
}

export interface ServiceRow {
  name: string;
  nodes: string[];
  figures: FigureRow[];
  errors: string[];
}

export interface LogEntry {
  atMs: number;
  kind: 'join' | 'leave' | 'death' | 'unreachable' | 'back' | 'hand-off' | 'lease-loss' | 'overload' | 'not-ready' | 'ready' | 'watch';
  text: string;
}

export interface ClusterView {
  atMs: number;
  self: string;
  cluster: string;
  partitions: number;
  /** Sampling since (ms since epoch). */
  watchingSinceMs: number;
  intervalMs: number;
  nodes: NodeRow[];
  /** Per partition: index into nodes of the node serving it, -1 for none. */
  owner: number[];
  /** Per partition: 0 settled, 1 being acquired, 2 being released (a hand-off under way). */
  moving: number[];
  types: TypeRow[];
  services: ServiceRow[];
  totals: { turnsPerSecond: number; activations: number; turns: number; failed: number; overloaded: number };
  log: LogEntry[];
}

export interface SeriesChunk {
  t: number[];
  series: Record<string, (number | null)[]>;
}

interface Sample {
  atMs: number;
  reports: Map<string, NodeReport>;
}

const LOG_KEPT = 300;
/** Percentiles cover about this much of the latest samples. */
const PERCENTILE_WINDOW_MS = 10_000;

export class ClusterWatch {
  readonly #o: Required<Omit<ClusterWatchOptions, 'onActive'>> & Pick<ClusterWatchOptions, 'onActive'>;
  #timer: NodeJS.Timeout | undefined;
  #idle: NodeJS.Timeout | undefined;
  #sampling: Promise<void> | undefined;
  #since = 0;
  #view: ClusterView | undefined;
  /** Recent samples, for rates and the percentile window. */
  #recent: Sample[] = [];
  #log: LogEntry[] = [];
  #t: number[] = [];
  #series = new Map<string, (number | null)[]>();
  /** What the previous sample showed, for the log. */
  #lastMembers = new Set<string>();
  #lastUnreachable = new Set<string>();
  #lastNotReady = new Map<string, string>();
  #lastServer: (string | undefined)[] = [];
  #lastAddress = new Map<string, string>();
  /** Node id → its label on the partition map, kept for the life of the watch so a label never moves. */
  readonly #labels = new Map<string, string>();

  constructor(options: ClusterWatchOptions) {
    this.#o = {
      ...options,
      intervalMs: options.intervalMs ?? 1000,
      idleStopMs: options.idleStopMs ?? 30_000,
      historyMs: options.historyMs ?? 15 * 60_000,
      now: options.now ?? Date.now,
    };
  }

  get active(): boolean {
    return this.#timer !== undefined;
  }

  /** Someone is watching: sample now if not yet, and keep sampling until idleStopMs after the last call. */
  async touch(): Promise<ClusterView> {
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => this.stop(), this.#o.idleStopMs);
    this.#idle.unref();
    if (!this.#timer) {
      this.#since = this.#o.now();
      this.#note('watch', `sampling started (someone opened the dashboard on ${this.#o.self})`);
      this.#timer = setInterval(() => void this.#sample(), this.#o.intervalMs);
      this.#timer.unref();
      this.#o.onActive?.(true);
      await this.#sample();
    }
    if (!this.#view) await (this.#sampling ?? this.#sample());
    return this.#view!;
  }

  stop(): void {
    if (!this.#timer) return;
    clearInterval(this.#timer);
    clearTimeout(this.#idle);
    this.#timer = undefined;
    this.#recent = [];
    this.#view = undefined;
    this.#note('watch', 'sampling stopped (nobody watched)');
    this.#o.onActive?.(false);
  }

  /** Series points after `sinceMs`. */
  series(sinceMs: number): SeriesChunk {
    let i = this.#t.length;
    while (i > 0 && this.#t[i - 1]! > sinceMs) i--;
    const series: Record<string, (number | null)[]> = {};
    for (const [k, v] of this.#series) series[k] = v.slice(i);
    return { t: this.#t.slice(i), series };
  }

  /** The latest reports by node id (to find who serves a partition, or a node's ops URL). */
  latest(): { view: ClusterView | undefined; reports: Map<string, NodeReport> } {
    return { view: this.#view, reports: this.#recent.at(-1)?.reports ?? new Map() };
  }

  /** Takes a sample now (besides the timer's), and settles when it is merged. */
  sampleNow(): Promise<void> {
    return this.#sample();
  }

  #sample(): Promise<void> {
    // One sample at a time: a slow peer delays the next one, it does not pile them up.
    this.#sampling ??= this.#takeSample().finally(() => (this.#sampling = undefined));
    return this.#sampling;
  }

  async #takeSample(): Promise<void> {
    const local = await this.#o.local();
    const atMs = this.#o.now();
    const addresses = new Map<string, string>();
    for (const m of local.members) addresses.set(m.nodeId, m.address);
    const others = [...addresses].filter(([id]) => id !== local.nodeId);
    const answers = await Promise.all(others.map(([id, address]) => this.#o.peers.report(id, address)));
    const reports = new Map<string, NodeReport>([[local.nodeId, local]]);
    const errors = new Map<string, string>();
    others.forEach(([id], i) => {
      const a = answers[i]!;
      if (a.ok) reports.set(id, a.report);
      else errors.set(id, a.error);
    });
    const sample: Sample = { atMs, reports };
    this.#recent.push(sample);
    while (this.#recent.length > 2 && this.#recent[0]!.atMs < atMs - PERCENTILE_WINDOW_MS - 2 * this.#o.intervalMs) this.#recent.shift();
    const view = await this.#merge(local, addresses, errors);
    this.#noteChanges(view, addresses);
    this.#record(view);
    this.#view = view;
  }

  async #merge(local: NodeReport, addresses: Map<string, string>, errors: Map<string, string>): Promise<ClusterView> {
    const samples = this.#recent;
    const now = samples.at(-1)!;
    const prev = samples.length > 1 ? samples.at(-2)! : undefined;
    const windowStart = samples.find((s) => s.atMs >= now.atMs - PERCENTILE_WINDOW_MS - this.#o.intervalMs / 2) ?? now;
    const ids = [...new Set([...addresses.keys(), ...now.reports.keys()])].sort();
    const P = local.partitions;
    const owner = new Array<number>(P).fill(-1);
    const moving = new Array<number>(P).fill(0);
    const nodes: NodeRow[] = [];
    const typeLists: TypeTallySnapshot[][] = [];
    const typesByNode = new Map<string, Map<string, number>>();
    for (const [i, id] of ids.entries()) {
      const r = now.reports.get(id);
      let label = this.#labels.get(id);
      if (label === undefined) this.#labels.set(id, (label = labelOf(this.#labels.size)));
      const row: NodeRow = { nodeId: id, label, address: addresses.get(id) ?? r?.address ?? '', status: 'unreachable', serving: 0, acquiring: 0, releasing: 0, links: [] };
      nodes.push(row);
      if (!r) {
        row.detail = errors.get(id) ?? 'no report';
        continue;
      }
      row.opsUrl = id === local.nodeId ? undefined : await this.#o.peers.opsUrl(id, row.address);
      row.status = r.notReady ? 'not ready' : 'up';
      if (r.notReady) row.detail = r.notReady;
      row.uptimeMs = r.uptimeMs;
      row.rssBytes = r.rssBytes;
      row.heapUsedBytes = r.heapUsedBytes;
      row.shards = r.shards;
      row.leasesHeld = r.leasesHeld;
      row.ringEpoch = r.ringEpoch;
      row.inspector = r.inspector;
      row.turnsTotal = r.totals.turns;
      row.activations = r.totals.activations;
      row.links = r.links.map((l) => ({ peer: l.peer, connected: l.connected, queuedFrames: l.queuedFrames, stalls: l.stalls }));
      const before = prev?.reports.get(id);
      if (before && r.atMs > before.atMs) {
        const dt = (r.atMs - before.atMs) / 1000;
        row.cpuPercent = Math.max(0, (r.cpuMicros - before.cpuMicros) / 1e6 / dt) * 100;
        row.turnsPerSecond = Math.max(0, r.totals.turns - before.totals.turns) / dt;
        const perType = new Map<string, number>();
        const old = new Map(before.types.map((t) => [t.type, t]));
        for (const t of r.types) perType.set(t.type, Math.max(0, t.turns - (old.get(t.type)?.turns ?? 0)) / dt);
        typesByNode.set(id, perType);
      }
      const s = r.partitionStates;
      for (let p = 0; p < P && p < s.length; p++) {
        const c = s.charCodeAt(p);
        if (c === 115 /* s */) {
          row.serving++;
          owner[p] = i;
        } else if (c === 97 /* a */) {
          row.acquiring++;
          moving[p] = 1;
        } else if (c === 114 /* r */) {
          row.releasing++;
          moving[p] = 2;
          if (owner[p] === -1) owner[p] = i;
        }
      }
      typeLists.push(r.types);
    }
    // A partition both served and moving is settled by the server that has it.
    for (let p = 0; p < P; p++) if (moving[p] === 1 && owner[p] !== -1) moving[p] = 0;

    const merged = mergeTallies(typeLists);
    const mergedWindow = mergeTallies([...windowStart.reports.values()].filter((r) => now.reports.has(r.nodeId)).map((r) => r.types));
    const types: TypeRow[] = merged.map((t) => {
      const byNode: Record<string, number> = {};
      let rate = 0;
      for (const [id, m] of typesByNode) {
        const v = m.get(t.type) ?? 0;
        byNode[id] = v;
        rate += v;
      }
      const w = mergedWindow.find((x) => x.type === t.type);
      const times = t.times.map((n, b) => Math.max(0, n - (w && windowStart !== now ? (w.times[b] ?? 0) : 0)));
      const timed = times.reduce((a, b) => a + b, 0);
      return {
        type: t.type,
        activations: t.activations,
        turns: t.turns,
        turnsPerSecond: rate,
        p50Ms: quantileMs(times, 0.5),
        p99Ms: quantileMs(times, 0.99),
        timedInWindow: timed,
        failed: t.failed,
        overloaded: t.overloaded,
        passivated: t.passivated,
        activated: t.activated,
        byNode,
      };
    });

    const services = this.#services(now, prev);
    const up = nodes.filter((n) => n.turnsPerSecond !== undefined);
    return {
      atMs: now.atMs,
      self: local.nodeId,
      cluster: local.cluster,
      partitions: P,
      watchingSinceMs: this.#since,
      intervalMs: this.#o.intervalMs,
      nodes,
      owner,
      moving,
      types,
      services,
      totals: {
        turnsPerSecond: up.reduce((a, n) => a + (n.turnsPerSecond ?? 0), 0),
        activations: merged.reduce((a, t) => a + t.activations, 0),
        turns: merged.reduce((a, t) => a + t.turns, 0),
        failed: merged.reduce((a, t) => a + t.failed, 0),
        overloaded: merged.reduce((a, t) => a + t.overloaded, 0),
      },
      log: this.#log.slice(-LOG_KEPT).reverse(),
    };
  }

  #services(now: Sample, prev: Sample | undefined): ServiceRow[] {
    const rows = new Map<string, ServiceRow & { byName: Map<string, FigureRow & { rate: number; rated: boolean }> }>();
    for (const r of now.reports.values()) {
      const before = prev?.reports.get(r.nodeId);
      const dt = before ? (r.atMs - before.atMs) / 1000 : 0;
      for (const s of r.services) {
        let row = rows.get(s.name);
        if (!row) rows.set(s.name, (row = { name: s.name, nodes: [], figures: [], errors: [], byName: new Map() }));
        row.nodes.push(r.nodeId);
        if (s.error) row.errors.push(`${r.nodeId}: ${s.error}`);
        const old = before?.services.find((x) => x.name === s.name);
        for (const f of s.figures) {
          let fr = row.byName.get(f.name);
          if (!fr) {
            row.byName.set(f.name, (fr = { name: f.name, kind: f.kind, unit: f.unit, value: 0, rate: 0, rated: false }));
            row.figures.push(fr);
          }
          // A cluster-wide figure is the same on every node: shown once (the largest, for a node that lags).
          if (f.scope === 'cluster') fr.value = Math.max(fr.value, f.value);
          else fr.value += f.value;
          if (f.kind === 'count' && dt > 0) {
            const was = old?.figures.find((x) => x.name === f.name);
            if (was) {
              fr.rate += Math.max(0, f.value - was.value) / dt;
              fr.rated = true;
            }
          }
        }
      }
    }
    return [...rows.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map(({ byName, ...row }) => ({
        ...row,
        figures: [...byName.values()].map(({ rate, rated, ...f }) => (f.kind === 'count' && rated ? { ...f, perSecond: rate } : f)),
      }));
  }

  #noteChanges(view: ClusterView, addresses: Map<string, string>): void {
    const first = this.#lastServer.length === 0;
    const members = new Set(addresses.keys());
    const unreachable = new Set(view.nodes.filter((n) => n.status === 'unreachable').map((n) => n.nodeId));
    if (!first) {
      for (const id of members) if (!this.#lastMembers.has(id)) this.#note('join', `${id} joined (${addresses.get(id)})`);
      for (const id of this.#lastMembers) {
        if (members.has(id)) continue;
        // A graceful leave hands its partitions off first; one that still served some died.
        if (this.#lastUnreachable.has(id) || this.#lastServer.includes(id)) this.#note('death', `${id} was declared dead (it stopped heartbeating while it still served partitions) and left the ring`);
        else this.#note('leave', `${id} left the cluster (${this.#lastAddress.get(id) ?? ''})`);
        this.#o.peers.forget(id);
      }
      for (const id of unreachable) if (!this.#lastUnreachable.has(id) && members.has(id)) this.#note('unreachable', `${id} does not answer: ${view.nodes.find((n) => n.nodeId === id)?.detail ?? ''}`);
      for (const id of this.#lastUnreachable) if (!unreachable.has(id) && members.has(id)) this.#note('back', `${id} answers again`);
    }
    for (const n of view.nodes) {
      const was = this.#lastNotReady.get(n.nodeId);
      if (n.status === 'not ready' && was === undefined && !first) this.#note('not-ready', `${n.nodeId} is not ready: ${n.detail ?? ''}`);
      if (n.status === 'up' && was !== undefined) this.#note('ready', `${n.nodeId} is ready again`);
      if (n.status === 'not ready') this.#lastNotReady.set(n.nodeId, n.detail ?? '');
      else if (n.status === 'up') this.#lastNotReady.delete(n.nodeId);
    }
    // Partitions that changed server since the last sample, grouped by (from, to, kind).
    const server = view.owner.map((i) => (i >= 0 ? view.nodes[i]!.nodeId : undefined));
    if (!first) {
      const moves = new Map<string, { from: string; to: string; lost: boolean; n: number; sample: number[] }>();
      for (let p = 0; p < server.length; p++) {
        const from = this.#lastServer[p];
        const to = server[p];
        if (from === undefined || to === undefined || from === to) continue;
        const lost = !members.has(from) || unreachable.has(from) || this.#lastUnreachable.has(from);
        const key = `${from}\u0000${to}\u0000${lost}`;
        const m = moves.get(key) ?? { from, to, lost, n: 0, sample: [] };
        m.n++;
        if (m.sample.length < 6) m.sample.push(p);
        moves.set(key, m);
      }
      for (const m of moves.values()) {
        const list = `${m.sample.join(', ')}${m.n > m.sample.length ? ', …' : ''}`;
        if (m.lost) this.#note('lease-loss', `${m.n} partitions of ${m.from} taken by ${m.to} after its leases lapsed (${list})`);
        else this.#note('hand-off', `${m.n} partitions handed off from ${m.from} to ${m.to} (${list})`);
      }
      const prev = this.#recent.length > 1 ? this.#recent.at(-2)! : undefined;
      for (const r of this.#recent.at(-1)!.reports.values()) {
        const old = prev?.reports.get(r.nodeId);
        if (!old) continue;
        const oldTypes = new Map(old.types.map((t) => [t.type, t.overloaded]));
        for (const t of r.types) {
          const d = t.overloaded - (oldTypes.get(t.type) ?? t.overloaded);
          if (d > 0) this.#note('overload', `${d} messages to ${t.type} actors refused on ${r.nodeId}: mailbox full (Overloaded)`);
        }
        const dq = r.totals.rejectedOverloaded - old.totals.rejectedOverloaded - r.types.reduce((a, t) => a + t.overloaded - (oldTypes.get(t.type) ?? t.overloaded), 0);
        if (dq > 0) this.#note('overload', `${dq} messages refused on ${r.nodeId} (Overloaded)`);
      }
    }
    // A partition served by nobody for a while (its owner died, its lease not yet lapsed) keeps its
    // last server, so that whoever takes it is logged as taking it from that node.
    this.#lastServer = server.map((id, p) => id ?? this.#lastServer[p]);
    this.#lastMembers = members;
    this.#lastUnreachable = unreachable;
    for (const [id, a] of addresses) this.#lastAddress.set(id, a);
    view.log = this.#log.slice(-LOG_KEPT).reverse();
  }

  #note(kind: LogEntry['kind'], text: string): void {
    this.#log.push({ atMs: this.#o.now(), kind, text });
    if (this.#log.length > LOG_KEPT * 2) this.#log = this.#log.slice(-LOG_KEPT);
  }

  #record(view: ClusterView): void {
    const t = view.atMs;
    const point = new Map<string, number | null>();
    point.set('turns/s', view.totals.turnsPerSecond);
    point.set('activations', view.totals.activations);
    for (const n of view.nodes) {
      point.set(`turns/s ${n.nodeId}`, n.turnsPerSecond ?? null);
      point.set(`cpu% ${n.nodeId}`, n.cpuPercent ?? null);
      point.set(`rss ${n.nodeId}`, n.rssBytes ?? null);
    }
    for (const ty of view.types) {
      point.set(`turns/s type ${ty.type}`, ty.turnsPerSecond);
      point.set(`p99 ${ty.type}`, ty.p99Ms ?? null);
    }
    for (const s of view.services) for (const f of s.figures) point.set(`${s.name} ${f.name}`, f.kind === 'count' ? (f.perSecond ?? null) : f.value);
    const len = this.#t.length;
    this.#t.push(t);
    for (const [k, v] of point) {
      let arr = this.#series.get(k);
      if (!arr) this.#series.set(k, (arr = new Array<number | null>(len).fill(null)));
      arr.push(v);
    }
    for (const [k, arr] of this.#series) if (!point.has(k)) arr.push(null);
    // Older than the history: dropped (a series with nothing left goes too).
    let drop = 0;
    while (drop < this.#t.length && this.#t[drop]! < t - this.#o.historyMs) drop++;
    if (drop > 0) {
      this.#t.splice(0, drop);
      for (const [k, arr] of this.#series) {
        arr.splice(0, drop);
        if (arr.every((v) => v === null)) this.#series.delete(k);
      }
    }
  }
}

function labelOf(i: number): string {
  let s = '';
  let n = i;
  do {
    s = String.fromCharCode(65 + (n % 26)) + s;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return s;
}
