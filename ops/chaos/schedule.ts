// The fault plan of a chaos run: which node is killed, paused or stopped when, drawn from a seeded
// generator so the same --seed and flags give the same plan.

export type FaultKind = 'kill' | 'pause' | 'stop';

export interface PlannedFault {
  /** Milliseconds after the load started. */
  atMs: number;
  kind: FaultKind;
  /** Index of the node (0-based; printed as n1, n2, ...). */
  node: number;
}

export interface FaultPlanOptions {
  seed: number;
  nodes: number;
  durationMs: number;
  /** 0 turns a kind off. */
  killEveryMs: number;
  pauseEveryMs: number;
  stopEveryMs: number;
}

/** mulberry32: small, fast, and the same sequence for a seed on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Every `every` ms of the run, one fault of each enabled kind, moved by up to ±20% of its interval
 * so that kinds with common multiples do not always collide; each on a node drawn at random.
 * Sorted by time. Faults run one after another (see run.ts), so every node is up when one starts.
 */
export function planFaults(o: FaultPlanOptions): PlannedFault[] {
  const random = seededRandom(o.seed);
  const plan: PlannedFault[] = [];
  const kinds: [FaultKind, number][] = [
    ['kill', o.killEveryMs],
    ['pause', o.pauseEveryMs],
    ['stop', o.stopEveryMs],
  ];
  for (const [kind, every] of kinds) {
    if (every <= 0) continue;
    for (let k = 1; k * every < o.durationMs; k++) {
      const jitter = (random() - 0.5) * 0.4 * every;
      // Not in the last 5% of the run, so that the load goes on for a while after the last fault.
      const atMs = Math.round(Math.min(o.durationMs * 0.95, Math.max(0, k * every + jitter)));
      plan.push({ atMs, kind, node: 0 });
    }
  }
  plan.sort((a, b) => a.atMs - b.atMs || a.kind.localeCompare(b.kind));
  // Targets are drawn after sorting, so they do not depend on the order kinds were listed in.
  for (const fault of plan) fault.node = Math.floor(random() * o.nodes);
  return plan;
}

export function describeFault(f: PlannedFault): string {
  return `${(f.atMs / 1000).toFixed(1)}s ${f.kind} n${f.node + 1}`;
}
