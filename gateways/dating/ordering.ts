// Puts a round's out-of-order events back in sequence order: remembers each arrived event by its
// sequence number, moves the frontier (every sequence number up to it has arrived) forward, and
// hands each pair's newly ordered likes over in one batch per step.

import { encodePairEvent, FROM_LO, LIKED, SELF } from '../../actors/match-pair.js';
import { LIKE_LIKED, type LikeType } from './parser.js';

/** The sign bit of a cell: the event is a LIKE_LIKED. */
const LIKED_BIT = -0x80000000;

/** One step's work for one pair: its newly ordered likes, encoded for the match-pair actor. */
export interface PairBatch {
  lo: number;
  hi: number;
  events: number[];
}

const EMPTY = new Int32Array(0);
/** `held` of a pair whose actor already has its events. */
const ACTIVE = -1;

function grow<T extends Int32Array>(old: T, size: number): T {
  const next = new (old.constructor as new (n: number) => T)(size);
  next.set(old);
  return next;
}

/** Sequence numbers the dense cells always may cover (8 MiB), whatever has arrived. */
const DENSE_FLOOR = 1 << 20;
/** Beyond the floor, the dense cells cover at most this many sequence numbers per event arrived. */
const DENSE_PER_EVENT = 16;

/**
 * Memory is a few typed arrays: 8 bytes per sequence number and about 20 per liked pair, so ten
 * million events fit in a few hundred megabytes, and nothing is allocated per event. The dense
 * cells cover sequence numbers only up to DENSE_PER_EVENT times the events arrived (and the
 * floor): an event past that goes to a Map until the cells grow over it, so memory follows the
 * events received, not the highest sequence number a hostile source can name.
 *
 * Only LIKE_LIKED events go to the actors: under the match rule the other two types change
 * nothing (they cancel no like) and are never a match, so they are ordered and counted here and
 * go no further. And a pair's first like can never be a match (the rule needs an earlier like of
 * the same pair), so a pair is handed to its actor only at its second like, with the first one
 * before it. Most pairs of a large random round have a single like: their actors are never
 * activated, which is what keeps the actor path cheap. The pair table is touched in sequence
 * order only, once per like, as the frontier passes.
 */
export class SequenceBook {
  readonly maxSeq: number;
  /**
   * Two cells per sequence number, side by side so that an arrival touches one cache line:
   * `from + 1` (0: not arrived yet), and `to` with the sign bit set for a LIKE_LIKED. Int32, so
   * that the optimised code never leaves 32-bit integers.
   */
  #cells = new Int32Array(0);
  #capacity = 0;
  /** Events at or past #capacity, by sequence number: [from + 1, to cell], as in #cells. */
  #far = new Map<number, [number, number]>();
  #frontier = 0;
  #highest = 0;
  #arrived = 0;
  /** LIKE_LIKED events arrived: an upper bound on the pairs the table will hold. */
  #likes = 0;

  #slots = new Int32Array(1 << 12);
  #pairs = 0;
  #lo: Int32Array = EMPTY;
  #hi: Int32Array = EMPTY;
  /** A pair's lone first like (its sequence number), or ACTIVE once its actor has been fed. */
  #held: Int32Array = EMPTY;
  /** Per pair: the step that last gave it a batch, and that batch's index, to group without a Map. */
  #stepOf: Int32Array = EMPTY;
  #batchOf: Int32Array = EMPTY;
  #step = 0;

  readonly #denseFloor: number;

  /** `denseFloor`: tests, to reach the far path with small rounds. */
  constructor(options: { maxSeq: number; denseFloor?: number }) {
    this.maxSeq = options.maxSeq;
    this.#denseFloor = options.denseFloor ?? DENSE_FLOOR;
  }

  /** Every sequence number from 1 to this has arrived. */
  get frontier(): number {
    return this.#frontier;
  }
  get highest(): number {
    return this.#highest;
  }
  get arrived(): number {
    return this.#arrived;
  }
  /** Pairs with a LIKE_LIKED so far behind the frontier. */
  get pairs(): number {
    return this.#pairs;
  }
  /** Sequence numbers up to the highest seen that have not arrived (counted, so not for every event). */
  missing(): number {
    let missing = 0;
    const dense = Math.min(this.#highest, this.#capacity - 1);
    for (let s = this.#frontier + 1; s <= dense; s++) if (this.#cells[s * 2] === 0) missing++;
    // Every key of #far is at or past #capacity, and distinct.
    if (this.#highest >= this.#capacity) missing += this.#highest - Math.max(this.#capacity, this.#frontier + 1) + 1 - this.#far.size;
    return missing;
  }

  /** Events that came more than once: arrivals beyond the distinct sequence numbers. */
  duplicates(): number {
    return this.#arrived - (this.#highest - this.missing());
  }

  /**
   * Records an event. A sequence number the frontier already passed is a duplicate and is dropped
   * (false). One that is not ordered yet is not checked: reading its cell first would stall on a
   * cache miss for every event of a shuffled round (it measured 1.4 times slower), so a later
   * copy replaces an earlier one, and duplicates() counts them when the source ends.
   */
  add(seq: number, type: LikeType, from: number, to: number): boolean {
    if (seq <= this.#frontier) return false;
    if (seq >= this.#capacity && !this.#growSeq(seq)) return this.#addFar(seq, type, from, to);
    const cells = this.#cells;
    const at = seq * 2;
    cells[at] = from + 1;
    if (type === LIKE_LIKED) {
      cells[at + 1] = to | LIKED_BIT;
      this.#likes++;
    } else cells[at + 1] = to;
    this.#arrived++;
    if (seq > this.#highest) this.#highest = seq;
    return true;
  }

  /**
   * Moves the frontier over every newly contiguous sequence number and returns the batches of
   * pairs whose actors are to get likes, each in sequence order, pairs in order of first like.
   */
  advance(): PairBatch[] {
    // The frontier at the end of the cells with the next events in #far: the cells grow over them
    // (allowed: every sequence number before them has arrived).
    if (this.#frontier + 1 >= this.#capacity && this.#far.has(this.#frontier + 1)) this.#growSeq(this.#frontier + 1);
    let cells = this.#cells;
    let capacity = this.#capacity;
    let s = this.#frontier + 1;
    if (s >= capacity || cells[s * 2] === 0) return [];
    // Sized once for every like that has arrived, so the loop below never grows or rehashes:
    // in a shuffled round it runs once, over nearly everything, on code not yet optimised.
    this.#reserve(this.#likes);
    const step = ++this.#step;
    const batches: PairBatch[] = [];
    const slots = this.#slots;
    const mask = slots.length - 1;
    const los = this.#lo;
    const his = this.#hi;
    const held = this.#held;
    const stepOf = this.#stepOf;
    const batchOf = this.#batchOf;
    let pairs = this.#pairs;
    for (; ; s++) {
      if (s >= capacity) {
        if (!this.#far.has(s) || !this.#growSeq(s)) break;
        cells = this.#cells;
        capacity = this.#capacity;
      }
      const f1 = cells[s * 2]!;
      if (f1 === 0) break;
      const t0 = cells[s * 2 + 1]!;
      if (t0 >= 0) continue; // not a LIKE_LIKED
      const f = (f1 - 1) | 0;
      const t = t0 & 0x7fffffff;
      const lo = f < t ? f : t;
      const hi = f < t ? t : f;
      let h = (Math.imul(lo, 0x9e3779b1) ^ Math.imul(hi ^ (hi >>> 15), 0x85ebca6b)) >>> 0;
      h = (h ^ (h >>> 13)) & mask;
      let pair = -1;
      for (;;) {
        const v = slots[h]!;
        if (v === 0) break;
        if (los[v - 1] === lo && his[v - 1] === hi) {
          pair = v - 1;
          break;
        }
        h = (h + 1) & mask;
      }
      if (pair < 0) {
        // The pair's first like: held until it has a second.
        los[pairs] = lo;
        his[pairs] = hi;
        held[pairs] = s;
        slots[h] = ++pairs;
        continue;
      }
      let batch: PairBatch;
      if (stepOf[pair] === step) batch = batches[batchOf[pair]!]!;
      else {
        stepOf[pair] = step;
        batchOf[pair] = batches.length;
        batch = { lo, hi, events: [] };
        batches.push(batch);
      }
      const first = held[pair]!;
      if (first !== ACTIVE) {
        held[pair] = ACTIVE;
        batch.events.push(encodePairEvent(first, this.#pairBits(first, lo, hi)));
      }
      batch.events.push(encodePairEvent(s, this.#pairBits(s, lo, hi)));
    }
    this.#pairs = pairs;
    this.#frontier = s - 1;
    return batches;
  }

  #addFar(seq: number, type: LikeType, from: number, to: number): boolean {
    this.#far.set(seq, [from + 1, type === LIKE_LIKED ? to | LIKED_BIT : to]);
    if (type === LIKE_LIKED) this.#likes++;
    this.#arrived++;
    if (seq > this.#highest) this.#highest = seq;
    return true;
  }

  #pairBits(seq: number, lo: number, hi: number): number {
    return LIKED | (((this.#cells[seq * 2]! - 1) | 0) === lo ? FROM_LO : 0) | (lo === hi ? SELF : 0);
  }

  /** Grows the cells over `seq` when the events arrived allow it (false: they do not). */
  #growSeq(seq: number): boolean {
    const allowed = Math.min(this.maxSeq + 1, Math.max(this.#denseFloor, (this.#arrived + 1) * DENSE_PER_EVENT));
    if (seq >= allowed) return false;
    let size = Math.max(1024, this.#capacity * 2);
    while (size <= seq) size *= 2;
    size = Math.min(size, allowed);
    this.#cells = grow(this.#cells, size * 2);
    this.#capacity = size;
    if (this.#far.size) this.#takeNear();
    return true;
  }

  /** Moves into the cells the far events they now cover. */
  #takeNear(): void {
    const cells = this.#cells;
    for (const [seq, cell] of this.#far) {
      if (seq >= this.#capacity) continue;
      if (seq > this.#frontier) {
        cells[seq * 2] = cell[0];
        cells[seq * 2 + 1] = cell[1];
      }
      this.#far.delete(seq);
    }
  }

  /** Room for `pairs` pairs in all, at most half the table's slots in use. */
  #reserve(pairs: number): void {
    if (pairs > this.#lo.length) {
      let size = Math.max(1024, this.#lo.length);
      while (size < pairs) size *= 2;
      this.#lo = grow(this.#lo, size);
      this.#hi = grow(this.#hi, size);
      this.#held = grow(this.#held, size);
      this.#stepOf = grow(this.#stepOf, size);
      this.#batchOf = grow(this.#batchOf, size);
    }
    if (pairs * 2 > this.#slots.length) {
      let size = this.#slots.length;
      while (pairs * 2 > size) size *= 2;
      this.#rehash(size);
    }
  }

  #rehash(size: number): void {
    const slots = new Int32Array(size);
    const mask = slots.length - 1;
    for (let pair = 0; pair < this.#pairs; pair++) {
      const lo = this.#lo[pair]!;
      const hi = this.#hi[pair]!;
      let h = (Math.imul(lo, 0x9e3779b1) ^ Math.imul(hi ^ (hi >>> 15), 0x85ebca6b)) >>> 0;
      h = (h ^ (h >>> 13)) & mask;
      while (slots[h] !== 0) h = (h + 1) & mask;
      slots[h] = pair + 1;
    }
    this.#slots = slots;
  }
}
