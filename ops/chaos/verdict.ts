// The judgement of a chaos run: what the load was told against what the stores hold, per workload,
// and the verdict table a person reads at the end. Pure functions; run.ts feeds them.

import type { LineCounts } from './cart-load.js';

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
  /** Nodes that ended without being asked to (crashes of the node itself), restarted by the run. */
  unexpectedExits: number;
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
  /** True when every acknowledged event was stored before --drain-timeout. */
  drained: boolean;
  drainMs: number;
  /** Things that went wrong around the run (cleanup), not in what was checked. */
  notes: string[];
}

export function isNothingLost(events: EventsJudgement | undefined, carts: CartsJudgement | undefined, aggregates?: AggregatesJudgement): boolean {
  const e = !events || (events.lost === 0 && events.duplicated === 0 && events.neverSent === 0);
  const c = !carts || (carts.lost === 0 && carts.duplicated === 0 && carts.neverSent === 0);
  const a = !aggregates || (aggregates.off === 0 && aggregates.unanswered === 0);
  return e && c && a;
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
    '',
    `  faults: ${f.kill} SIGKILL + restart, ${f.pause} SIGSTOP/SIGCONT, ${f.stop} SIGTERM + restart` +
      (f.unexpectedExits ? `; ${f.unexpectedExits} node exit(s) nobody asked for (see the node logs)` : ''),
    `  drain: ${r.drained ? `every acknowledged event stored ${(r.drainMs / 1000).toFixed(1)}s after the load stopped` : `gave up after ${(r.drainMs / 1000).toFixed(1)}s (--drain-timeout): what was not stored by then counts as lost`}`,
  ];
  for (const ex of [...(e?.lostExamples ?? []).map((id) => `lost event ${id}`), ...(c?.lostExamples ?? []), ...(a?.offExamples ?? [])]) out.push(`  example: ${ex}`);
  for (const note of r.notes) out.push(`  note: ${note}`);
  out.push(
    r.ok
      ? `NOTHING ACKNOWLEDGED WAS LOST OR DUPLICATED (seed ${r.seed})`
      : `FAILED: acknowledged work was lost, duplicated, miscounted, or rows appeared that were never sent (seed ${r.seed}; rerun with --seed ${r.seed} --keep to look at the node logs)`,
  );
  return out.join('\n');
}
