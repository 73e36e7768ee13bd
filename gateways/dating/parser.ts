// Streaming parser of the Event Source's lines (`EVENT BEGIN`, `seq|TYPE|from|to`, `EVENT END`),
// working on raw bytes so a million lines cost no string per line, and never trusting its input.

export const LIKE_LIKED = 0;
export const LIKE_NOT_LIKED = 1;
export const LIKE_UNSPECIFIED = 2;
export type LikeType = typeof LIKE_LIKED | typeof LIKE_NOT_LIKED | typeof LIKE_UNSPECIFIED;
export const LIKE_TYPE_NAMES = ['LIKE_LIKED', 'LIKE_NOT_LIKED', 'LIKE_UNSPECIFIED'] as const;

/** Why a line was not taken. */
export type LineProblem =
  | 'malformed' // not `seq|TYPE|from|to` with decimal numbers
  | 'unknown-type'
  | 'seq-zero'
  | 'seq-too-large'
  | 'user-too-large'
  | 'too-long'
  | 'before-begin'
  | 'after-end';

export interface LikeEventSink {
  begin(): void;
  event(seq: number, type: LikeType, from: number, to: number): void;
  end(): void;
  /** A line that was dropped; `line` is at most 80 characters of it, for the log. */
  reject(problem: LineProblem, line: string): void;
}

/** Longest line taken: the longest valid line is about 60 bytes. */
export const MAX_LINE_BYTES = 128;
/** User ids are decimal integers up to 2^31 - 1. */
export const MAX_USER_ID = 0x7fffffff;

const NL = 10;
const CR = 13;
const PIPE = 124;
const BEGIN = Buffer.from('EVENT BEGIN');
const END = Buffer.from('EVENT END');
const T_LIKED = Buffer.from('LIKE_LIKED|');
const T_NOT_LIKED = Buffer.from('LIKE_NOT_LIKED|');
const T_UNSPECIFIED = Buffer.from('LIKE_UNSPECIFIED|');

function startsWith(buf: Buffer, at: number, end: number, word: Buffer): boolean {
  if (end - at < word.length) return false;
  for (let i = 0; i < word.length; i++) if (buf[at + i] !== word[i]) return false;
  return true;
}

function equals(buf: Buffer, at: number, end: number, word: Buffer): boolean {
  return end - at === word.length && startsWith(buf, at, end, word);
}

export class LikeLineParser {
  readonly #sink: LikeEventSink;
  readonly #maxSeq: number;
  #phase: 'before' | 'events' | 'after' = 'before';
  /** A line cut by the end of a chunk. */
  readonly #carry = Buffer.allocUnsafe(MAX_LINE_BYTES);
  #carried = 0;
  /** Inside an over-long line: drop bytes up to the next newline. */
  #skipping = false;

  constructor(sink: LikeEventSink, options: { maxSeq: number }) {
    this.#sink = sink;
    this.#maxSeq = options.maxSeq;
  }

  get phase(): 'before' | 'events' | 'after' {
    return this.#phase;
  }

  /** Feeds bytes as they come off the socket. */
  push(chunk: Buffer): void {
    let pos = 0;
    const len = chunk.length;
    if (this.#skipping || this.#carried > 0) {
      const nl = chunk.indexOf(NL, 0);
      const upto = nl < 0 ? len : nl;
      if (this.#skipping) {
        if (nl < 0) return;
        this.#skipping = false;
      } else if (this.#carried + upto > MAX_LINE_BYTES) {
        this.#tooLong(this.#carry, 0, this.#carried);
        this.#carried = 0;
        if (nl < 0) {
          this.#skipping = true;
          return;
        }
      } else {
        chunk.copy(this.#carry, this.#carried, 0, upto);
        this.#carried += upto;
        if (nl < 0) return;
        const n = this.#carried;
        this.#carried = 0;
        this.#line(this.#carry, 0, n);
      }
      pos = nl + 1;
    }
    while (pos < len) {
      const nl = chunk.indexOf(NL, pos);
      if (nl < 0) {
        const rest = len - pos;
        if (rest > MAX_LINE_BYTES) {
          this.#tooLong(chunk, pos, len);
          this.#skipping = true;
        } else {
          chunk.copy(this.#carry, 0, pos, len);
          this.#carried = rest;
        }
        return;
      }
      if (nl - pos > MAX_LINE_BYTES) this.#tooLong(chunk, pos, nl);
      else this.#line(chunk, pos, nl);
      pos = nl + 1;
    }
  }

  /** The source closed: a last line without newline still counts. */
  finish(): void {
    if (this.#carried > 0) {
      const n = this.#carried;
      this.#carried = 0;
      this.#line(this.#carry, 0, n);
    }
    this.#skipping = false;
  }

  #tooLong(buf: Buffer, at: number, end: number): void {
    this.#sink.reject('too-long', buf.toString('latin1', at, Math.min(end, at + 80)));
  }

  #reject(problem: LineProblem, buf: Buffer, at: number, end: number): void {
    this.#sink.reject(problem, buf.toString('latin1', at, Math.min(end, at + 80)));
  }

  #line(buf: Buffer, at: number, end: number): void {
    if (end > at && buf[end - 1] === CR) end--;
    if (end === at) return; // blank lines carry nothing; not worth a complaint
    if (this.#phase === 'events') {
      if (this.#event(buf, at, end)) return;
      if (equals(buf, at, end, END)) {
        this.#phase = 'after';
        this.#sink.end();
      } else this.#reject('malformed', buf, at, end);
      return;
    }
    if (this.#phase === 'before') {
      if (equals(buf, at, end, BEGIN)) {
        this.#phase = 'events';
        this.#sink.begin();
      } else this.#reject('before-begin', buf, at, end);
      return;
    }
    this.#reject('after-end', buf, at, end);
  }

  /** Parses one event line; false when it is not an event line at all (maybe `EVENT END`). */
  #event(buf: Buffer, at: number, end: number): boolean {
    // Hand-inlined: this runs once per event, millions of times a round.
    let p = at;
    let seq = 0;
    let c = buf[p]! - 48;
    if (c < 0 || c > 9) {
      if (c === 69 - 48 /* E */) return false;
      return this.#malformed(buf, at, end);
    }
    while (c >= 0 && c <= 9 && p < end) {
      seq = seq * 10 + c;
      c = buf[++p]! - 48;
    }
    if (p >= end || p - at > 15 || buf[p] !== PIPE) return this.#malformed(buf, at, end);
    p++;
    // `LIKE_` then LIKED| / NOT_LIKED| / UNSPECIFIED|, told apart by the sixth byte.
    let type: LikeType;
    let word: Buffer;
    const sixth = buf[p + 5];
    if (sixth === 76 /* L */) (type = LIKE_LIKED), (word = T_LIKED);
    else if (sixth === 78 /* N */) (type = LIKE_NOT_LIKED), (word = T_NOT_LIKED);
    else if (sixth === 85 /* U */) (type = LIKE_UNSPECIFIED), (word = T_UNSPECIFIED);
    else return this.#unknownType(buf, at, p, end);
    if (!startsWith(buf, p, end, word)) return this.#unknownType(buf, at, p, end);
    p += word.length;
    const fromAt = p;
    let from = 0;
    c = buf[p]! - 48;
    while (c >= 0 && c <= 9 && p < end) {
      from = from * 10 + c;
      c = buf[++p]! - 48;
    }
    if (p === fromAt || p >= end || p - fromAt > 15 || buf[p] !== PIPE) return this.#malformed(buf, at, end);
    p++;
    const toAt = p;
    let to = 0;
    while (p < end) {
      c = buf[p]! - 48;
      if (c < 0 || c > 9) return this.#malformed(buf, at, end);
      to = to * 10 + c;
      p++;
    }
    if (p === toAt || p - toAt > 15) return this.#malformed(buf, at, end);
    if (seq === 0) this.#reject('seq-zero', buf, at, end);
    else if (seq > this.#maxSeq) this.#reject('seq-too-large', buf, at, end);
    else if (from > MAX_USER_ID || to > MAX_USER_ID) this.#reject('user-too-large', buf, at, end);
    else this.#sink.event(seq, type, from, to);
    return true;
  }

  /** A well-formed line with a type we do not know is its own case, for the log. */
  #unknownType(buf: Buffer, at: number, typeAt: number, end: number): true {
    const bar = buf.indexOf(PIPE, typeAt);
    this.#reject(bar > typeAt && bar < end ? 'unknown-type' : 'malformed', buf, at, end);
    return true;
  }

  #malformed(buf: Buffer, at: number, end: number): true {
    this.#reject('malformed', buf, at, end);
    return true;
  }

}
