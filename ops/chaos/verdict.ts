// The judgement of a chaos run: what the load was told against what the stores hold, per workload,
// and the verdict table a person reads at the end. Pure functions; run.ts feeds them.

import type { LineCounts } from './cart-load.js';
import type { AckedIncrement } from './counter-load.js';
import type { FaultRecord, OwnershipJudgement } from './ownership-watch.js';

export interface EventsJudgement {
  /** Ids that got a 202. */
  acked: number;
  /** Ids of batches surely not accepted (every attempt a 4xx, 503 or refused connection). */
  refused: number;
  /** Ids of batches with an attempt that got no answer and no later 202. */
  ambiguous: number;
  /** Distinct ids in processed_events. */
  stored: number;
  /** Acknowledged ids not in processed_events. */
  lost: number;
  lostExamples: string[];
  /** Acknowledged ids found in dead_letter_events (they count as lost when not also stored). */
  deadLettered: number;
  /** Rows beyond one per id. */
  duplicated: number;
  /** Stored ids the load never sent: the run was not isolated, or something made rows up. */
  neverSent: number;
  /** Informational: of the ambiguous ids, how many were stored (either is allowed). */
  ambiguousStored: number;
  /** Informational: of the refused ids, how many were stored anyway (the door said it took none). */
  refusedStored: number;
}

export interface EventsOutcome {
  acked: ReadonlySet<string>;
  refused: ReadonlySet<string>;
  ambiguous: ReadonlySet<string>;
}

const EXAMPLES = 5;

/** `rowsPerId`: every id in processed_events with its number of rows. */
export function judgeEvents(load: EventsOutcome, rowsPerId: ReadonlyMap<string, number>, deadLetterIds: ReadonlySet<string>): EventsJudgement {
  const lostIds: string[] = [];
  let deadLettered = 0;
  for (const id of load.acked) {
    if (!rowsPerId.has(id)) lostIds.push(id);
    if (deadLetterIds.has(id)) deadLettered++;
  }
  let duplicated = 0;
  let neverSent = 0;
  let ambiguousStored = 0;
  let refusedStored = 0;
  for (const [id, rows] of rowsPerId) {
    duplicated += rows - 1;
    if (load.ambiguous.has(id)) ambiguousStored++;
    else if (load.refused.has(id)) refusedStored++;
    else if (!load.acked.has(id)) neverSent++;
  }
  return {
    acked: load.acked.size,
    refused: load.refused.size,
    ambiguous: load.ambiguous.size,
    stored: rowsPerId.size,
    lost: lostIds.length,
    lostExamples: lostIds.slice(0, EXAMPLES),
    deadLettered,
    duplicated,
    neverSent,
    ambiguousStored,
    refusedStored,
  };
}

export interface CartsJudgement {
  acked: number;
  refused: number;
  ambiguous: number;
  /** Sum of the quantities of the run's lines in cart_entry. */
  stored: number;
  /** Acknowledged adds missing: per line, acknowledged minus stored when more were acknowledged. */
  lost: number;
  lostExamples: string[];
  /** Adds applied twice: per line, stored beyond acknowledged plus ambiguous. */
  duplicated: number;
  /** Quantity in lines the load never added to. */
  neverSent: number;
  /** Informational: unanswered adds that were applied (per line, stored beyond acknowledged, at most the unanswered). */
  ambiguousStored: number;
  lines: number;
}

/** `storedLines`: `cart|item` → quantity in cart_entry. */
export function judgeCarts(lines: ReadonlyMap<string, LineCounts>, storedLines: ReadonlyMap<string, number>): CartsJudgement {
  const j: CartsJudgement = { acked: 0, refused: 0, ambiguous: 0, stored: 0, lost: 0, lostExamples: [], duplicated: 0, neverSent: 0, ambiguousStored: 0, lines: lines.size };
  for (const [key, c] of lines) {
    const stored = storedLines.get(key) ?? 0;
    j.acked += c.acked;
    j.refused += c.refused;
    j.ambiguous += c.ambiguous;
    if (stored < c.acked) {
      j.lost += c.acked - stored;
      if (j.lostExamples.length < EXAMPLES) j.lostExamples.push(`cart ${key.replace('|', ' item ')}: ${c.acked} acknowledged, ${stored} stored`);
    }
    if (stored > c.acked) j.ambiguousStored += Math.min(stored - c.acked, c.ambiguous);
    if (stored > c.acked + c.ambiguous) j.duplicated += stored - c.acked - c.ambiguous;
  }
  for (const [key, quantity] of storedLines) {
    j.stored += quantity;
    if (!lines.has(key)) j.neverSent += quantity;
  }
  return j;
}

export interface FaultCounts {
  kill: number;
  pause: number;
  stop: number;
  partition?: number;
  'slow-link'?: number;
  'redis-restart'?: number;
  'redis-pause'?: number;
  'redis-failover'?: number;
  'pg-restart'?: number;
  /** Nodes that ended without being asked to (crashes of the node itself), restarted by the run. */
  unexpectedExits: number;
}

/**
 * The durable counters: every acknowledged increment applied exactly once, and no two activations
 * of one counter live at once (their replies' times interleave).
 */
export interface CountersJudgement {
  acked: number;
  refused: number;
  ambiguous: number;
  /** Increments in the counters' states. */
  applied: number;
  lost: number;
  /** Sequence numbers applied more than once, plus counts that disagree with their list. */
  duplicated: number;
  /** Applied numbers that were refused or never sent. */
  neverSent: number;
  /** Counters whose state no node gave. */
  unanswered: number;
  /** Pairs of activations of one counter whose replies overlap in time. */
  doubleActivations: number;
  /** Counters whose replies gave the same count twice (two activations each counted on its own copy). */
  forked: number;
  examples: string[];
}

/** A counter's activations, each [first reply, last reply]; two that overlap were live at once. */
export function findDoubleActivations(acked: readonly AckedIncrement[]): { pairs: number; forked: number; examples: string[] } {
  const byKey = new Map<string, AckedIncrement[]>();
  for (const a of acked) {
    let list = byKey.get(a.key);
    if (!list) byKey.set(a.key, (list = []));
    list.push(a);
  }
  let pairs = 0;
  let forked = 0;
  const examples: string[] = [];
  for (const [key, list] of byKey) {
    const spans = new Map<string, [number, number]>();
    const seenN = new Map<number, string>();
    let fork = false;
    for (const a of list) {
      const span = spans.get(a.activation);
      if (!span) spans.set(a.activation, [a.at, a.at]);
      else spans.set(a.activation, [Math.min(span[0], a.at), Math.max(span[1], a.at)]);
      const other = seenN.get(a.n);
      if (other !== undefined && other !== a.activation) fork = true;
      seenN.set(a.n, a.activation);
    }
    if (fork) forked++;
    const all = [...spans].sort((x, y) => x[1][0] - y[1][0]);
    for (let i = 0; i < all.length; i++) {
      for (let j = i + 1; j < all.length; j++) {
        const [ia, [a0, a1]] = all[i]!;
        const [ib, [b0, b1]] = all[j]!;
        if (a0 <= b1 && b0 <= a1) {
          pairs++;
          if (examples.length < EXAMPLES) examples.push(`counter ${key}: activations ${ia} (${a0}-${a1}) and ${ib} (${b0}-${b1}) both answered at once`);
        }
      }
    }
  }
  return { pairs, forked, examples };
}

export interface CountersOutcome {
  acked: readonly AckedIncrement[];
  refused: ReadonlySet<number>;
  ambiguous: ReadonlySet<number>;
}

/** `states`: each counter's state at the end (undefined: no node gave it). */
export function judgeCounters(load: CountersOutcome, states: ReadonlyMap<string, { n: number; applied: number[] } | undefined>): CountersJudgement {
  const examples: string[] = [];
  const appliedTimes = new Map<number, number>();
  let applied = 0;
  let unanswered = 0;
  let duplicated = 0;
  for (const [key, state] of states) {
    if (!state) {
      unanswered++;
      if (examples.length < EXAMPLES) examples.push(`counter ${key}: no node gave its state`);
      continue;
    }
    applied += state.applied.length;
    if (state.n !== state.applied.length) {
      duplicated += Math.abs(state.n - state.applied.length);
      if (examples.length < EXAMPLES) examples.push(`counter ${key}: counts ${state.n} but lists ${state.applied.length} increments`);
    }
    for (const seq of state.applied) appliedTimes.set(seq, (appliedTimes.get(seq) ?? 0) + 1);
  }
  let lost = 0;
  for (const a of load.acked) {
    if (states.get(a.key) === undefined) continue;
    if (!appliedTimes.has(a.seq)) {
      lost++;
      if (examples.length < EXAMPLES) examples.push(`counter ${a.key}: increment ${a.seq} acknowledged (count ${a.n} by activation ${a.activation}) but not applied`);
    }
  }
  const ackedSeqs = new Set(load.acked.map((a) => a.seq));
  let neverSent = 0;
  for (const [seq, times] of appliedTimes) {
    if (times > 1) {
      duplicated += times - 1;
      if (examples.length < EXAMPLES) examples.push(`increment ${seq} applied ${times} times`);
    }
    if (!ackedSeqs.has(seq) && !load.ambiguous.has(seq)) neverSent++;
  }
  const doubles = findDoubleActivations(load.acked);
  examples.push(...doubles.examples.slice(0, Math.max(0, EXAMPLES - examples.length)));
  return { acked: load.acked.length, refused: load.refused.size, ambiguous: load.ambiguous.size, applied, lost, duplicated, neverSent, unanswered, doubleActivations: doubles.pairs, forked: doubles.forked, examples };
}

/**
 * The user aggregates (durable `user/<id>` actors, rebuilt from the partition changelogs when a
 * node dies) against the stored rows they count: each user's summary must count its rows exactly.
 */
export interface AggregatesJudgement {
  /** Users with stored events. */
  users: number;
  /** Users whose summary counts another number of events than they have rows. */
  off: number;
  /** Over those users, the events counted too few or too many. */
  eventsOff: number;
  /** Users whose summary no node gave. */
  unanswered: number;
  offExamples: string[];
}

/** `rowsPerUser`: stored events per user; `counted`: each user's summary count (undefined: no answer). */
export function judgeAggregates(rowsPerUser: ReadonlyMap<string, number>, counted: ReadonlyMap<string, number | undefined>): AggregatesJudgement {
  let off = 0;
  let eventsOff = 0;
  let unanswered = 0;
  const offExamples: string[] = [];
  for (const [user, rows] of rowsPerUser) {
    const n = counted.get(user);
    if (n === undefined) {
      unanswered++;
      continue;
    }
    if (n === rows) continue;
    off++;
    eventsOff += Math.abs(n - rows);
    if (offExamples.length < EXAMPLES) offExamples.push(`user ${user}: its summary counts ${n} events, it has ${rows} rows`);
  }
  return { users: rowsPerUser.size, off, eventsOff, unanswered, offExamples };
}

export interface ChaosReport {
  ok: boolean;
  seed: number;
  nodes: number;
  durationMs: number;
  faults: FaultCounts;
  events?: EventsJudgement;
  carts?: CartsJudgement;
  aggregates?: AggregatesJudgement;
  counters?: CountersJudgement;
  /** Pairs of activations of one actor live at the same time (from the counters' replies). */
  doubleActivations?: number;
  /** Partitions served by nobody for longer than detection plus hand-off. */
  ownership?: OwnershipJudgement & { stuckAfterMs: number };
  /** Each fault: when it began and healed, and when every partition was served again. */
  faultLog?: FaultRecord[];
  /** True when every acknowledged event was stored before --drain-timeout. */
  drained: boolean;
  drainMs: number;
  /** Things that went wrong around the run (cleanup), not in what was checked. */
  notes: string[];
}

export function isNothingLost(events: EventsJudgement | undefined, carts: CartsJudgement | undefined, aggregates?: AggregatesJudgement, counters?: CountersJudgement, ownership?: OwnershipJudgement): boolean {
  const e = !events || (events.lost === 0 && events.duplicated === 0 && events.neverSent === 0);
  const c = !carts || (carts.lost === 0 && carts.duplicated === 0 && carts.neverSent === 0);
  const a = !aggregates || (aggregates.off === 0 && aggregates.unanswered === 0);
  const k = !counters || (counters.lost === 0 && counters.duplicated === 0 && counters.neverSent === 0 && counters.unanswered === 0 && counters.doubleActivations === 0 && counters.forked === 0);
  const o = !ownership || ownership.stuck === 0;
  return e && c && a && k && o;
}

const secondsOf = (ms: number | undefined): string => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`);

/** One line per fault: what, on what, how long, and how long until every partition was served again. */
export function formatFaultLog(log: readonly FaultRecord[]): string[] {
  return log.map((f) => {
    const lasted = f.healedAtMs === undefined ? 'never healed' : `healed after ${secondsOf(f.healedAtMs - f.startedAtMs)}`;
    const recovery = f.healedAtMs === undefined ? '' : f.recoveredAtMs === undefined ? ', NOT every partition served again by the end' : `, every partition served ${secondsOf(f.recoveredAtMs - f.healedAtMs)} after the heal`;
    return `    ${secondsOf(f.startedAtMs).padStart(6)} ${f.kind} ${f.target}${f.detail ? ` (${f.detail})` : ''}: ${lasted}${recovery}`;
  });
}

const n = (v: number | undefined): string => (v === undefined ? '-' : v.toLocaleString('en-US'));

/** The table at the end of a run, and the verdict line under it. */
export function formatVerdict(r: ChaosReport): string {
  const e = r.events;
  const c = r.carts;
  // One column per workload that ran.
  const columns: { title: string; cell: (k: keyof EventsJudgement & keyof CartsJudgement) => string }[] = [];
  if (e) columns.push({ title: 'events', cell: (k) => n(e[k] as number) });
  if (c) columns.push({ title: 'cart adds', cell: (k) => n(c[k] as number) });
  const rows: string[][] = [
    ['', ...columns.map((col) => col.title)],
    ['acknowledged (202 / OK)', ...columns.map((col) => col.cell('acked'))],
    ['refused (surely not taken)', ...columns.map((col) => col.cell('refused'))],
    ['no answer (may be stored)', ...columns.map((col) => col.cell('ambiguous'))],
    ['  of which stored', ...columns.map((col) => col.cell('ambiguousStored'))],
    ['stored', ...columns.map((col) => col.cell('stored'))],
    ['LOST (acknowledged, not stored)', ...columns.map((col) => col.cell('lost'))],
    ['DUPLICATED (stored twice)', ...columns.map((col) => col.cell('duplicated'))],
    ['STORED BUT NEVER SENT', ...columns.map((col) => col.cell('neverSent'))],
  ];
  if (e && e.deadLettered > 0) rows.push(['acknowledged but dead-lettered', n(e.deadLettered), ...(c ? ['-'] : [])]);
  if (e && e.refusedStored > 0) rows.push(['refused yet stored (door said 503)', n(e.refusedStored), ...(c ? ['-'] : [])]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map((row) => '  ' + row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  lines.splice(1, 0, '  ' + widths.map((w) => '-'.repeat(w)).join('  '));
  const f = r.faults;
  const a = r.aggregates;
  const out = [
    'verdict',
    ...lines,
    ...(a ? [`  user aggregates (durable actors): ${n(a.users)} users, ${a.off || a.unanswered ? `${n(a.off)} OFF by ${n(a.eventsOff)} events, ${n(a.unanswered)} UNANSWERED` : 'each counts exactly its stored events'}`] : []),
    ...(r.counters ? [`  durable counters (asks): ${n(r.counters.acked)} acknowledged, ${n(r.counters.ambiguous)} unanswered, ${n(r.counters.applied)} applied; LOST ${n(r.counters.lost)}, DUPLICATED ${n(r.counters.duplicated)}, NEVER SENT ${n(r.counters.neverSent)}, UNANSWERED counters ${n(r.counters.unanswered)}`] : []),
    ...(r.doubleActivations !== undefined ? [`  DOUBLE ACTIVATIONS (two live at once): ${n(r.doubleActivations)}${r.counters?.forked ? `; ${n(r.counters.forked)} counters FORKED (one count given twice)` : ''}`] : []),
    ...(r.ownership ? [`  STUCK partitions (served by nobody for more than ${secondsOf(r.ownership.stuckAfterMs)}): ${n(r.ownership.stuck)}; longest unserved ${secondsOf(r.ownership.longestUnservedMs)}${r.ownership.unreadSamples ? `; ${n(r.ownership.unreadSamples)} samples unread` : ''}`] : []),
    '',
    `  faults: ${f.kill} SIGKILL + restart, ${f.pause} SIGSTOP/SIGCONT, ${f.stop} SIGTERM + restart` +
      (['partition', 'slow-link', 'redis-restart', 'redis-pause', 'redis-failover', 'pg-restart'] as const).map((k) => (f[k] ? `, ${f[k]} ${k}` : '')).join('') +
      (f.unexpectedExits ? `; ${f.unexpectedExits} node exit(s) nobody asked for (see the node logs)` : ''),
    ...(r.faultLog?.length ? ['  each fault, and the time from its heal to every partition served again:', ...formatFaultLog(r.faultLog)] : []),
    `  drain: ${r.drained ? `every acknowledged event stored ${(r.drainMs / 1000).toFixed(1)}s after the load stopped` : `gave up after ${(r.drainMs / 1000).toFixed(1)}s (--drain-timeout): what was not stored by then counts as lost`}`,
  ];
  for (const ex of [...(e?.lostExamples ?? []).map((id) => `lost event ${id}`), ...(c?.lostExamples ?? []), ...(a?.offExamples ?? []), ...(r.counters?.examples ?? []), ...(r.ownership?.stuckExamples ?? [])]) out.push(`  example: ${ex}`);
  for (const note of r.notes) out.push(`  note: ${note}`);
  out.push(
    r.ok
      ? `NOTHING ACKNOWLEDGED WAS LOST OR DUPLICATED (seed ${r.seed})`
      : `FAILED: acknowledged work was lost, duplicated, miscounted, activated twice, left unserved, or rows appeared that were never sent (seed ${r.seed}; rerun with --seed ${r.seed} --keep to look at the node logs)`,
  );
  return out.join('\n');
}
