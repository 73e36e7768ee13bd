// The consistent-hash ring: virtual nodes of every member on a 32-bit circle, each partition owned
// by the first virtual node at or after the partition's point. Pure and deterministic: the same
// members give the same table in every process, and a join or leave moves about 1/N partitions.

import { fnv1a } from '../partition.js';

export const DEFAULT_VNODES = 256;

/** murmur3's finalizer over FNV-1a: FNV alone clusters similar strings ("a#1", "a#2") on the circle. */
export function ringPoint(s: string): number {
  let h = fnv1a(s);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Ring {
  /** Sorted, without duplicates. */
  readonly members: readonly string[];
  readonly vnodes: number;
  readonly #points: Uint32Array;
  readonly #owners: Int32Array;

  constructor(members: Iterable<string>, vnodes = DEFAULT_VNODES) {
    if (!Number.isInteger(vnodes) || vnodes < 1 || vnodes > 4096) throw new RangeError(`vnodes must be 1 to 4096, got ${vnodes}`);
    this.members = [...new Set(members)].sort();
    this.vnodes = vnodes;
    const tokens: { point: number; member: number }[] = [];
    this.members.forEach((m, i) => {
      for (let v = 0; v < vnodes; v++) tokens.push({ point: ringPoint(`${m}#${v}`), member: i });
    });
    // Ties (two virtual nodes on one point) break by member id, so every process agrees.
    tokens.sort((a, b) => a.point - b.point || a.member - b.member);
    this.#points = Uint32Array.from(tokens, (t) => t.point);
    this.#owners = Int32Array.from(tokens, (t) => t.member);
  }

  /** The member owning a point of the circle; undefined on an empty ring. */
  ownerOfPoint(point: number): string | undefined {
    const n = this.#points.length;
    if (n === 0) return undefined;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#points[mid]! < point) lo = mid + 1;
      else hi = mid;
    }
    return this.members[this.#owners[lo === n ? 0 : lo]!];
  }

  ownerOfPartition(partition: number): string | undefined {
    return this.ownerOfPoint(ringPoint(`partition:${partition}`));
  }

  /** Owner of every partition 0..P-1 (empty strings on an empty ring). */
  assign(partitions: number): string[] {
    const out = new Array<string>(partitions);
    for (let p = 0; p < partitions; p++) out[p] = this.ownerOfPartition(p) ?? '';
    return out;
  }
}

export interface PartitionMove {
  partition: number;
  from: string;
  to: string;
}

/** The partitions whose owner differs between two tables of one size. */
export function movedPartitions(before: readonly string[], after: readonly string[]): PartitionMove[] {
  if (before.length !== after.length) throw new RangeError(`tables differ in size: ${before.length} and ${after.length} partitions`);
  const moves: PartitionMove[] = [];
  for (let p = 0; p < before.length; p++) if (before[p] !== after[p]) moves.push({ partition: p, from: before[p]!, to: after[p]! });
  return moves;
}
