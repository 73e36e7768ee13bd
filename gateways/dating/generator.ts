// A seeded Event Source round: random likes between users, the matches they must give, and the
// bytes on the wire in a chosen arrival order (full shuffle, shuffled within windows, or in order).

import { LIKE_LIKED, LIKE_TYPE_NAMES } from './parser.js';

export type ShuffleMode = 'full' | 'windowed' | 'none';

export interface GeneratorOptions {
  events: number;
  users: number;
  seed: number;
  shuffle: ShuffleMode;
  /** For `windowed`: events are shuffled within consecutive blocks this long. */
  window?: number;
  /** Share of events that answer an earlier like (the reverse direction); the rest are uniform. */
  answerRate?: number;
}

export interface GeneratedRound {
  /** `EVENT BEGIN`, the events in arrival order, `EVENT END`, cut into chunks of about 1 MiB. */
  chunks: Buffer[];
  /** The match sequence numbers, increasing. */
  expected: Int32Array;
  bytes: number;
}

/** mulberry32: small, fast, and the same sequence for a seed on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const MAX_GENERATED_USERS = 4_000_000;

export function generateRound(options: GeneratorOptions): GeneratedRound {
  const { events: n, users, shuffle } = options;
  if (!(n >= 0) || !Number.isInteger(n)) throw new RangeError(`events must be a whole number >= 0, got ${n}`);
  if (!(users >= 2) || users > MAX_GENERATED_USERS) throw new RangeError(`users must be from 2 to ${MAX_GENERATED_USERS}, got ${users}`);
  const random = seededRandom(options.seed);
  const answerRate = options.answerRate ?? 0;
  const from = new Int32Array(n + 1);
  const to = new Int32Array(n + 1);
  const type = new Uint8Array(n + 1);
  const liked = new Set<number>();
  const expected: number[] = [];
  for (let seq = 1; seq <= n; seq++) {
    let f: number;
    let t: number;
    if (seq > 1 && random() < answerRate) {
      const earlier = 1 + Math.floor(random() * (seq - 1));
      f = to[earlier]!;
      t = from[earlier]!;
    } else {
      f = 1 + Math.floor(random() * users);
      t = 1 + Math.floor(random() * (users - 1));
      if (t >= f) t++;
    }
    const ty = Math.floor(random() * 3);
    from[seq] = f;
    to[seq] = t;
    type[seq] = ty;
    if (ty === LIKE_LIKED) {
      // Exact while user ids stay below 2^22 (MAX_GENERATED_USERS).
      if (liked.has(t * 2147483648 + f)) expected.push(seq);
      liked.add(f * 2147483648 + t);
    }
  }
  liked.clear();

  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i + 1;
  if (shuffle === 'full') shuffleRange(order, 0, n, random);
  else if (shuffle === 'windowed') {
    const w = Math.max(2, options.window ?? 1000);
    for (let at = 0; at < n; at += w) shuffleRange(order, at, Math.min(n, at + w), random);
  }

  const chunks: Buffer[] = [Buffer.from('EVENT BEGIN\n')];
  let bytes = chunks[0]!.length;
  const names = LIKE_TYPE_NAMES;
  let text = '';
  for (let i = 0; i < n; i++) {
    const seq = order[i]!;
    text += seq + '|' + names[type[seq]!] + '|' + from[seq] + '|' + to[seq] + '\n';
    if (text.length > 1 << 20) {
      const b = Buffer.from(text, 'latin1');
      chunks.push(b);
      bytes += b.length;
      text = '';
    }
  }
  text += 'EVENT END\n';
  const last = Buffer.from(text, 'latin1');
  chunks.push(last);
  bytes += last.length;
  return { chunks, expected: Int32Array.from(expected), bytes };
}

function shuffleRange(a: Int32Array, start: number, end: number, random: () => number): void {
  for (let i = end - 1; i > start; i--) {
    const j = start + Math.floor(random() * (i - start + 1));
    const x = a[i]!;
    a[i] = a[j]!;
    a[j] = x;
  }
}
