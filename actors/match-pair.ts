// The actor `match-pair/<lo>-<hi>`: the likes seen in each direction between two users, fed the
// pair's events in sequence order by the dating gateway; it answers which of them are matches.

import { defineActor } from '../runtime/index.js';

/**
 * One event travels as a single number, `seq * 8 + bits`, so a batch is a plain number array
 * (cheap to clone across threads, no object per event). Bits below.
 */
export const FROM_LO = 1;
export const LIKED = 2;
/** Both users are the same person: "the opposite direction" is the same direction. */
export const SELF = 4;

export function encodePairEvent(seq: number, bits: number): number {
  return seq * 8 + bits;
}

export function pairKey(lo: number, hi: number): string {
  return lo + '-' + hi;
}

export interface PairLikes {
  /** The round whose events these are; an event of another round starts the pair afresh. */
  round: number;
  /** Bit 1: lo liked hi; bit 2: hi liked lo (LIKE_LIKED only, never cancelled). */
  liked: number;
}

export interface PairEvents {
  round: number;
  /** Encoded events (encodePairEvent), in increasing sequence order. */
  events: number[];
}

const LO_LIKED_HI = 1;
const HI_LIKED_LO = 2;

/**
 * Applies the match rule to a pair's events in sequence order: a LIKE_LIKED is a match when the
 * opposite LIKE_LIKED came earlier. Returns the new bits and pushes matching sequences to `out`.
 */
export function applyPairEvents(liked: number, events: readonly number[], out: number[]): number {
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const bits = e & 7; // low bits survive ToInt32 for any safe integer
    if ((bits & LIKED) === 0) continue;
    const seq = (e - bits) / 8;
    if (bits & SELF) {
      if (liked !== 0) out.push(seq);
      liked = LO_LIKED_HI | HI_LIKED_LO;
    } else if (bits & FROM_LO) {
      if (liked & HI_LIKED_LO) out.push(seq);
      liked |= LO_LIKED_HI;
    } else {
      if (liked & LO_LIKED_HI) out.push(seq);
      liked |= HI_LIKED_LO;
    }
  }
  return liked;
}

export default defineActor({
  type: 'match-pair',
  storage: 'volatile',
  // A pair's events of one round arrive within seconds; a minute idle frees it well before the
  // next large round needs the memory.
  idleTimeoutMs: 60_000,
  initialState: (): PairLikes => ({ round: -1, liked: 0 }),
  handlers: {
    /** Takes the next events of the pair (sequence order); replies the sequences that are matches. */
    likes(ctx, message: PairEvents): number[] {
      const prior = ctx.state.round === message.round ? ctx.state.liked : 0;
      const matches: number[] = [];
      const liked = applyPairEvents(prior, message.events, matches);
      if (liked !== prior || ctx.state.round !== message.round) ctx.state = { round: message.round, liked };
      return matches;
    },
  },
});
