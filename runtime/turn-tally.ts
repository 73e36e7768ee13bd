// Per actor type counters a shard keeps always (plain typed-array increments on the turn path) and
// the turn-time histogram it fills only while someone watches (the dashboard); read on demand.

/** Indexes into TypeTally.counts. */
export const TURNS = 0;
export const FAILED = 1;
export const OVERLOADED = 2;
export const ACTIVATED = 3;
export const PASSIVATED = 4;
/** Turns whose time was measured (the histogram's total). */
export const TIMED = 5;
const COUNTS = 6;

/**
 * Turn times in log buckets: 4 per doubling from 1 µs, so a percentile read back is within about
 * 19% of the true value; bucket 0 takes everything under 1 µs, the last everything over ~47 s.
 */
export const TIME_BUCKETS = 104;
const PER_DOUBLING = 4;

/** While timing, one turn in TIME_EVERY is timed (two clock reads), so watching stays cheap. */
export const TIME_EVERY = 8;

export class TypeTally {
  readonly counts = new Float64Array(COUNTS);
  readonly times = new Uint32Array(TIME_BUCKETS);
}

export function timeBucket(ms: number): number {
  const us = ms * 1000;
  if (!(us >= 1)) return 0;
  const b = Math.floor(Math.log2(us) * PER_DOUBLING) + 1;
  return b >= TIME_BUCKETS ? TIME_BUCKETS - 1 : b;
}

/** The upper bound of a bucket, in ms. */
export function bucketUpperMs(b: number): number {
  return b === 0 ? 0.001 : 2 ** (b / PER_DOUBLING) / 1000;
}

/** The q-quantile (0..1) of a histogram, in ms; undefined when it is empty. */
export function quantileMs(times: ArrayLike<number>, q: number): number | undefined {
  let total = 0;
  for (let i = 0; i < times.length; i++) total += times[i]!;
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < times.length; i++) {
    seen += times[i]!;
    if (seen >= rank) return bucketUpperMs(i);
  }
  return bucketUpperMs(times.length - 1);
}

/** One actor type's counters as a shard reports them (totals since the shard started). */
export interface TypeTallySnapshot {
  type: string;
  /** Live activations now. */
  activations: number;
  turns: number;
  failed: number;
  overloaded: number;
  activated: number;
  passivated: number;
  timed: number;
  /** Turn-time histogram (TIME_BUCKETS counts), of the timed turns. */
  times: number[];
}

export function snapshotTally(type: string, tally: TypeTally, activations: number): TypeTallySnapshot {
  const c = tally.counts;
  return {
    type,
    activations,
    turns: c[TURNS]!,
    failed: c[FAILED]!,
    overloaded: c[OVERLOADED]!,
    activated: c[ACTIVATED]!,
    passivated: c[PASSIVATED]!,
    timed: c[TIMED]!,
    times: Array.from(tally.times),
  };
}

/** Sums the snapshots of several shards (or nodes), type by type. */
export function mergeTallies(lists: readonly (readonly TypeTallySnapshot[])[]): TypeTallySnapshot[] {
  const byType = new Map<string, TypeTallySnapshot>();
  for (const list of lists) {
    for (const t of list) {
      const m = byType.get(t.type);
      if (!m) {
        byType.set(t.type, { ...t, times: [...t.times] });
        continue;
      }
      m.activations += t.activations;
      m.turns += t.turns;
      m.failed += t.failed;
      m.overloaded += t.overloaded;
      m.activated += t.activated;
      m.passivated += t.passivated;
      m.timed += t.timed;
      for (let i = 0; i < m.times.length; i++) m.times[i]! += t.times[i] ?? 0;
    }
  }
  return [...byType.values()].sort((a, b) => a.type.localeCompare(b.type));
}
