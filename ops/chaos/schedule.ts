// The fault plan of a chaos run: which fault of which kind comes when, on which node, drawn from a
// seeded generator so the same --seed and flags give the same plan.

import type { FaultKind } from './settings.js';

export type { FaultKind };

/** Which links a partition cuts: the node's peers, its Redis, or both. */
export type PartitionSide = 'peers' | 'redis' | 'both';

export interface PlannedFault {
  /** Milliseconds after the load started. */
  atMs: number;
  kind: FaultKind;
  /** Index of the node (0-based; printed as n1, n2, ...); the server faults ignore it. */
  node: number;
  /** Partitions only. */
  side?: PartitionSide;
}

export interface FaultPlanOptions {
  seed: number;
  nodes: number;
  durationMs: number;
  /** 0 turns a kind off. */
  killEveryMs: number;
  pauseEveryMs: number;
  stopEveryMs: number;
  /** The other kinds, each this often (when listed in `kinds`). */
  faultEveryMs?: number;
  /** Kinds other than kill, pause and stop to plan. */
  kinds?: readonly FaultKind[];
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

/** Kinds whose target is a node (the others hurt a server every node uses). */
export const NODE_FAULTS: readonly FaultKind[] = ['kill', 'pause', 'stop', 'partition', 'slow-link'];
const SIDES: readonly PartitionSide[] = ['peers', 'redis', 'both'];

/**
 * Every `every` ms of the run, one fault of each enabled kind, moved by up to ±20% of its interval
 * so that kinds with common multiples do not always collide; each on a node drawn at random.
 * Sorted by time. run.ts runs at most --overlap at once, each on a node no other fault holds.
 */
export function planFaults(o: FaultPlanOptions): PlannedFault[] {
  const random = seededRandom(o.seed);
  const plan: PlannedFault[] = [];
  const kinds: [FaultKind, number][] = [
    ['kill', o.killEveryMs],
    ['pause', o.pauseEveryMs],
    ['stop', o.stopEveryMs],
    ...(o.kinds ?? []).filter((k) => k !== 'kill' && k !== 'pause' && k !== 'stop').map((k): [FaultKind, number] => [k, o.faultEveryMs ?? 0]),
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
  for (const fault of plan) {
    fault.node = Math.floor(random() * o.nodes);
    if (fault.kind === 'partition') fault.side = SIDES[Math.floor(random() * SIDES.length)]!;
  }
  return plan;
}

export function describeFault(f: PlannedFault): string {
  const target = NODE_FAULTS.includes(f.kind) ? ` n${f.node + 1}` : '';
  return `${(f.atMs / 1000).toFixed(1)}s ${f.kind}${target}${f.side ? ` from ${f.side}` : ''}`;
}
