// The Event Listener's judgement: the plain sequential match rule (the reference every test and
// the harness compare against), and the checker that answers MATCH END - OK or - ERROR.

import { LIKE_LIKED, type LikeType } from './parser.js';

export interface LikeEvent {
  seq: number;
  type: LikeType;
  from: number;
  to: number;
}

/**
 * The match rule read literally, one event at a time in sequence order: a LIKE_LIKED from B to A
 * is a match when A liked B (LIKE_LIKED) at some earlier sequence number. Nothing cancels a like.
 */
export function expectedMatches(eventsInSequenceOrder: readonly LikeEvent[]): number[] {
  const liked = new Set<string>();
  const matches: number[] = [];
  for (const e of eventsInSequenceOrder) {
    if (e.type !== LIKE_LIKED) continue;
    if (liked.has(`${e.to}>${e.from}`)) matches.push(e.seq);
    liked.add(`${e.from}>${e.to}`);
  }
  return matches;
}

export type CheckerAnswer = 'MATCH END - OK' | 'MATCH END - ERROR';

/**
 * Takes the solution's lines one by one. The first line that is not the next expected match (out of
 * order, unknown, repeated or not a number) is an ERROR; OK once every expected match arrived in
 * order and the source has sent everything (so a round with no matches is not OK before it began).
 */
export class MatchChecker {
  readonly #expected: ArrayLike<number>;
  #next = 0;
  #sourceDone = false;
  #answer: CheckerAnswer | undefined;
  #problem: string | undefined;

  constructor(expected: ArrayLike<number>) {
    this.#expected = expected;
  }

  get received(): number {
    return this.#next;
  }
  get answer(): CheckerAnswer | undefined {
    return this.#answer;
  }
  /** Why the answer is ERROR. */
  get problem(): string | undefined {
    return this.#problem;
  }

  /** One line from the solution; returns the answer once there is one. */
  line(text: string): CheckerAnswer | undefined {
    if (this.#answer) return this.#answer;
    const t = text.trim();
    if (t === '') return undefined;
    const want = this.#expected[this.#next];
    if (!/^\d{1,15}$/.test(t) || Number(t) !== want) {
      this.#problem = want === undefined ? `got ${t.slice(0, 20)} after all ${this.#expected.length} matches` : `got ${t.slice(0, 20)} where ${want} was expected (match #${this.#next + 1})`;
      return (this.#answer = 'MATCH END - ERROR');
    }
    this.#next++;
    return this.#settle();
  }

  /** The Event Source has written EVENT END. */
  sourceDone(): CheckerAnswer | undefined {
    this.#sourceDone = true;
    return this.#settle();
  }

  #settle(): CheckerAnswer | undefined {
    if (!this.#answer && this.#sourceDone && this.#next === this.#expected.length) this.#answer = 'MATCH END - OK';
    return this.#answer;
  }
}
