// One round of the dating game: the Event Source's bytes in, pair batches out to the match-pair
// actors in sequence order, and their matches streamed to the Event Listener in increasing order
// as soon as every earlier event has arrived and been decided.

import type { Socket } from 'node:net';
import MatchPair, { pairKey, type PairEvents } from '../../actors/match-pair.js';
import { inServerSpan, isTracing, type ActorSystem, type Logger } from '../../runtime/index.js';
import { SequenceBook, type PairBatch } from './ordering.js';
import { LikeLineParser, type LikeEventSink, type LikeType, type LineProblem } from './parser.js';

/**
 * Hands pairs' batches of one step to their actors; each promise gives some of the matches (in any
 * order). Batches of one pair arrive in sequence order, and a pair's later step is handed over only
 * after its earlier one.
 */
export interface PairDecider {
  deliver(round: number, batches: readonly PairBatch[]): Promise<number[]>[];
}

/**
 * The match-pair actors of a node: one ask per pair and step, carrying all the pair's newly ordered
 * likes. (Handing a partition's pairs to a courier actor in that partition, to cut the main
 * thread's messages to one per partition, was tried and measured slower: a local ask on a shard
 * costs about what a cross-thread one does, and the courier puts a partition's asks on one shard.)
 */
export function actorDecider(system: ActorSystem, askTimeoutMs = 60_000): PairDecider {
  const askPairs = (round: number, batches: readonly PairBatch[]): Promise<number[]>[] => {
    const replies: Promise<number[]>[] = new Array(batches.length);
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i]!;
      const message: PairEvents = { round, events: b.events };
      replies[i] = system.ref(MatchPair, pairKey(b.lo, b.hi)).ask('likes', message, { timeoutMs: askTimeoutMs });
    }
    return replies;
  };
  return {
    deliver(round, batches) {
      // Traced (sampled by ratio): a span per step, the asks of its pairs inside it.
      if (!isTracing()) return askPairs(round, batches);
      return inServerSpan('dating.step', undefined, { 'dating.round': round, 'dating.pairs': batches.length }, () => askPairs(round, batches));
    },
  };
}

export type RoundEnd = 'ok' | 'error' | 'incomplete' | 'failed' | 'abandoned';

export interface RoundOutcome {
  round: number;
  end: RoundEnd;
  events: number;
  matches: number;
  /** Highest sequence number minus the ones that arrived. */
  missing: number;
  rejected: Partial<Record<LineProblem | 'duplicate', number>>;
  /** Messages (asks) to match-pair actors: one per pair and step that had likes to hand over. */
  actorMessages: number;
  /** From the first byte of the source to the outcome. */
  ms: number;
  reason?: string;
}

interface Step {
  batches: PairBatch[];
  sent: number;
  waiting: number;
  results: number[];
}

/** Messages to actors in flight at most; more wait their turn (the shards' queues are bounded). */
const MAX_IN_FLIGHT = 32_768;
/** Pairs handed to the decider at once. */
const MAX_SLICE = 16_384;
const LOGGED_REJECTS = 10;

export interface RoundOptions {
  id: number;
  decider: PairDecider;
  log: Logger;
  maxSeq: number;
  /** A decided round nobody listens to is dropped after this long (default: kept until replaced). */
  listenerWaitMs?: number;
  now?: () => number;
}

export class Round implements LikeEventSink {
  readonly id: number;
  readonly #decider: PairDecider;
  readonly #log: Logger;
  readonly #now: () => number;
  #book: SequenceBook | undefined;
  readonly #parser: LikeLineParser;
  readonly #rejected: Partial<Record<LineProblem | 'duplicate', number>> = {};
  #rejectsLogged = 0;
  #started = 0;

  readonly #steps: Step[] = [];
  #sendHead = 0;
  #inFlight = 0;
  #actorMessages = 0;
  #listenerWait: NodeJS.Timeout | undefined;
  readonly #listenerWaitMs: number | undefined;

  /** Every match so far, so a listener that (re)connects late gets the whole stream. */
  readonly #matches: number[] = [];
  #listener: MatchListener | undefined;
  #sourceOver: 'end' | 'closed' | undefined;
  #decided = false;
  #outcome: RoundOutcome | undefined;
  #events = 0;
  #lateDuplicates = 0;
  #missing = 0;
  readonly #done: Promise<RoundOutcome>;
  #resolveDone!: (o: RoundOutcome) => void;
  readonly #decidedPromise: Promise<boolean>;
  #resolveDecided!: (complete: boolean) => void;

  constructor(options: RoundOptions) {
    this.id = options.id;
    this.#decider = options.decider;
    this.#log = options.log.child({ round: options.id });
    this.#now = options.now ?? Date.now;
    this.#listenerWaitMs = options.listenerWaitMs;
    this.#book = new SequenceBook({ maxSeq: options.maxSeq });
    this.#parser = new LikeLineParser(this, { maxSeq: options.maxSeq });
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
    this.#decidedPromise = new Promise((resolve) => (this.#resolveDecided = resolve));
  }

  /** Resolves once every event that can be ordered is decided: true when the round was complete. */
  get decided(): Promise<boolean> {
    return this.#decidedPromise;
  }

  /** Settles with the outcome once the listener answered (or the round could not be finished). */
  get done(): Promise<RoundOutcome> {
    return this.#done;
  }
  get sourceOver(): boolean {
    return this.#sourceOver !== undefined;
  }
  get finished(): boolean {
    return this.#outcome !== undefined;
  }
  get hasListener(): boolean {
    return this.#listener !== undefined;
  }
  get matchesSoFar(): readonly number[] {
    return this.#matches;
  }

  // ---- the Event Source

  /** Bytes from the Event Source. */
  sourceData(chunk: Buffer): void {
    if (this.#sourceOver || this.#outcome) return;
    if (this.#started === 0) this.#started = this.#now();
    this.#parser.push(chunk);
    this.#stepForward();
  }

  /** The Event Source closed its side (or was closed). */
  sourceClosed(why?: string): void {
    if (this.#sourceOver || this.#outcome) return;
    this.#parser.finish();
    this.#stepForward();
    if (this.#sourceOver) return;
    this.#sourceOver = 'closed';
    const book = this.#book!;
    this.#noteDuplicates(book);
    this.#log.warn(
      { events: book.arrived - this.#lateDuplicates, highest: book.highest, frontier: book.frontier, why },
      'event source disconnected before EVENT END; matches up to the first missing event are sent, then the listener is closed',
    );
    this.#settleIfDecided();
  }

  begin(): void {
    this.#log.info('event source began');
  }

  event(seq: number, type: LikeType, from: number, to: number): void {
    if (!this.#book!.add(seq, type, from, to)) this.reject('duplicate', String(seq));
  }

  end(): void {
    const book = this.#book!;
    this.#sourceOver = 'end';
    this.#stepForward();
    this.#noteDuplicates(book);
    if (book.frontier < book.highest) {
      this.#log.warn({ events: book.arrived, highest: book.highest, missing: book.missing(), firstMissing: book.frontier + 1 }, 'EVENT END with sequence numbers missing; matches up to the first missing one are sent, then the listener is closed');
    } else {
      this.#log.info({ events: book.arrived, ms: this.#now() - this.#started }, 'EVENT END');
    }
    this.#settleIfDecided();
  }

  /** Duplicates of events not yet ordered are only counted at the end (see SequenceBook.add). */
  #noteDuplicates(book: SequenceBook): void {
    const late = book.duplicates();
    this.#lateDuplicates = late;
    if (late <= 0) return;
    this.#rejected.duplicate = (this.#rejected.duplicate ?? 0) + late;
    this.#log.warn({ duplicates: late }, 'events arrived more than once before being ordered; the last copy of each was used');
  }

  reject(problem: LineProblem | 'duplicate', line: string): void {
    this.#rejected[problem] = (this.#rejected[problem] ?? 0) + 1;
    if (this.#rejectsLogged++ < LOGGED_REJECTS) this.#log.warn({ problem, line }, 'event source line dropped');
  }

  // ---- the actors

  #stepForward(): void {
    const book = this.#book;
    if (!book) return;
    const batches = book.advance();
    if (batches.length === 0) return;
    this.#steps.push({ batches, sent: 0, waiting: 0, results: [] });
    this.#pump();
  }

  #pump(): void {
    const steps = this.#steps;
    while (this.#sendHead < steps.length && this.#inFlight < MAX_IN_FLIGHT && !this.#outcome) {
      const step = steps[this.#sendHead]!;
      while (step.sent < step.batches.length && this.#inFlight < MAX_IN_FLIGHT) {
        const slice = step.sent === 0 && step.batches.length <= MAX_SLICE ? step.batches : step.batches.slice(step.sent, step.sent + MAX_SLICE);
        let replies: Promise<number[]>[];
        try {
          replies = this.#decider.deliver(this.id, slice);
        } catch (err) {
          // Overloaded part-way through a slice would leave some pairs fed and others not: the
          // round cannot be trusted any more. (At most MAX_IN_FLIGHT + MAX_SLICE asks are out at
          // once, well below the shards' queue bounds, so this means the shards are stuck.)
          this.#fail(err);
          return;
        }
        step.sent += slice.length;
        this.#actorMessages += replies.length;
        step.waiting += replies.length;
        this.#inFlight += replies.length;
        for (const reply of replies) {
          reply.then(
            (matches) => {
              if (this.#outcome) return;
              for (let i = 0; i < matches.length; i++) step.results.push(matches[i]!);
              step.waiting--;
              this.#inFlight--;
              this.#emitDecided();
              this.#pump();
            },
            (err) => this.#fail(err),
          );
        }
      }
      if (step.sent < step.batches.length) return;
      step.batches = [];
      this.#sendHead++;
    }
    this.#emitDecided();
  }

  /** Emits the matches of every step whose asks all came back and whose predecessors did. */
  #emitDecided(): void {
    const steps = this.#steps;
    let n = 0;
    while (n < this.#sendHead && steps[n]!.waiting === 0) n++;
    if (n === 0) return;
    const first = this.#matches.length;
    for (const step of steps.splice(0, n)) {
      const results = step.results;
      if (results.length > 1) results.sort((a, b) => a - b);
      for (let i = 0; i < results.length; i++) this.#matches.push(results[i]!);
    }
    this.#sendHead -= n;
    if (this.#matches.length > first) this.#listener?.send(this.#matches);
    this.#settleIfDecided();
  }

  #fail(err: unknown): void {
    if (this.#outcome) return;
    const reason = `match-pair actors failed: ${(err as Error)?.message ?? String(err)}`;
    this.#log.error({ err }, reason);
    this.#finish('failed', reason);
    this.#listener?.close();
  }

  /** All events that can be ordered are decided: the listener gets the rest, or is closed. */
  #settleIfDecided(): void {
    if (this.#decided || !this.#sourceOver || this.#steps.length > 0 || this.#outcome) return;
    this.#decided = true;
    const book = this.#book!;
    this.#missing = book.missing();
    this.#events = book.arrived - this.#lateDuplicates;
    const complete = this.#sourceOver === 'end' && book.frontier === book.highest;
    this.#book = undefined; // frees the round's arrays: only the matches are kept from here on
    this.#resolveDecided(complete);
    if (complete) {
      this.#log.info({ events: this.#events, matches: this.#matches.length, ms: this.#now() - this.#started }, 'round decided');
      this.#awaitListener();
      return; // the listener's MATCH END finishes it
    }
    const reason =
      this.#sourceOver === 'closed'
        ? `the event source disconnected before EVENT END (${book.arrived - this.#lateDuplicates} events, first missing ${book.frontier + 1})`
        : `EVENT END with ${this.#missing} sequence numbers missing (first missing ${book.frontier + 1})`;
    this.#finish('incomplete', reason);
    this.#listener?.close();
  }

  // ---- the Event Listener

  /** Gives this round its listener; false when it already has one (the caller closes the newcomer). */
  attachListener(socket: Socket): boolean {
    if (this.#listener || this.#outcome) return false;
    if (this.#listenerWait) clearTimeout(this.#listenerWait);
    this.#listenerWait = undefined;
    this.#listener = new MatchListener(socket, this.#log, (answer) => this.#listenerAnswered(answer));
    this.#listener.send(this.#matches);
    return true;
  }

  /** Without a listener, a decided round waits a while for one, then is dropped. */
  #awaitListener(): void {
    if (this.#listenerWaitMs === undefined || this.#listener || this.#outcome || this.#listenerWait) return;
    this.#listenerWait = setTimeout(() => {
      this.#listenerWait = undefined;
      if (!this.#listener) this.abandon(`no event listener within ${this.#listenerWaitMs} ms of the round being decided`);
    }, this.#listenerWaitMs);
    this.#listenerWait.unref?.();
  }

  /**
   * Takes back a listener that has been sent nothing yet (to give it to a newer round); undefined
   * when there is none, or when it has already seen this round's matches.
   */
  releaseFreshListener(): Socket | undefined {
    const listener = this.#listener;
    if (!listener || listener.sentAny) return undefined;
    this.#listener = undefined;
    return listener.release();
  }

  #listenerAnswered(answer: 'ok' | 'error' | 'closed'): void {
    this.#listener = undefined;
    if (this.#outcome) return;
    if (answer === 'closed') {
      this.#log.warn('event listener left without MATCH END; the next listener to connect gets the round from its first match');
      if (this.#decided) this.#awaitListener();
      return;
    }
    if (answer === 'error') this.#finish('error', 'the event listener answered MATCH END - ERROR');
    // The listener knows what it expects: an OK before every event was decided still ends the round.
    else this.#finish('ok', this.#decided ? undefined : 'the event listener answered OK before the round was fully decided');
  }

  /** A new round is starting while this one waits: drop it. */
  abandon(reason: string): void {
    if (this.#outcome) return;
    this.#log.warn({ matches: this.#matches.length }, `round abandoned: ${reason}`);
    this.#finish('abandoned', reason);
    this.#listener?.close();
  }

  #finish(end: RoundEnd, reason?: string): void {
    if (this.#outcome) return;
    if (this.#listenerWait) clearTimeout(this.#listenerWait);
    this.#steps.length = 0;
    this.#sendHead = 0;
    this.#outcome = {
      round: this.id,
      end,
      events: this.#book ? this.#book.arrived : this.#events,
      matches: this.#matches.length,
      actorMessages: this.#actorMessages,
      missing: this.#book?.missing() ?? this.#missing,
      rejected: { ...this.#rejected },
      ms: this.#started ? this.#now() - this.#started : 0,
      reason,
    };
    const level = end === 'ok' ? 'info' : 'warn';
    this.#book = undefined;
    this.#resolveDecided(false);
    this.#log[level]({ ...this.#outcome }, `round ${end}`);
    this.#resolveDone(this.#outcome);
  }
}

/**
 * The Event Listener's side of a round: waits for its `MATCH BEGIN`, writes matches one per line
 * in increasing order, and reports its `MATCH END - OK` / `MATCH END - ERROR`.
 */
export class MatchListener {
  readonly #socket: Socket;
  readonly #log: Logger;
  readonly #onAnswer: (answer: 'ok' | 'error' | 'closed') => void;
  #begun = false;
  #sent = 0;
  #text = '';
  #answered = false;
  readonly #onData = (text: string) => this.#read(text);
  readonly #onClose = () => this.#answer('closed');
  readonly #onError = () => {};

  constructor(socket: Socket, log: Logger, onAnswer: (answer: 'ok' | 'error' | 'closed') => void) {
    this.#socket = socket;
    this.#log = log;
    this.#onAnswer = onAnswer;
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', this.#onData);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
  }

  /** Nothing has been written to this listener yet. */
  get sentAny(): boolean {
    return this.#sent > 0;
  }

  /** Detaches from the socket, which keeps its MATCH BEGIN for whoever takes it next. */
  release(): Socket {
    this.#answered = true;
    this.#socket.off('data', this.#onData);
    this.#socket.off('error', this.#onError);
    this.#socket.off('close', this.#onClose);
    const unread = (this.#begun ? 'MATCH BEGIN\n' : '') + this.#text;
    if (unread) this.#socket.unshift(unread, 'latin1');
    return this.#socket;
  }

  /** Sends what of `matches` it has not sent yet (once the listener said MATCH BEGIN). */
  send(matches: readonly number[]): void {
    this.#pendingMatches = matches;
    if (!this.#begun || this.#sent >= matches.length || this.#socket.destroyed) return;
    const lines = matches.slice(this.#sent).join('\n') + '\n';
    this.#sent = matches.length;
    this.#socket.write(lines);
  }

  #pendingMatches: readonly number[] = [];

  close(): void {
    this.#socket.end();
  }

  #read(text: string): void {
    this.#text += text;
    if (this.#text.length > 4096) {
      this.#log.warn('event listener sent over 4 KiB without a newline; closing it');
      this.#socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.#text.indexOf('\n')) >= 0) {
      const line = this.#text.slice(0, nl).trim();
      this.#text = this.#text.slice(nl + 1);
      if (line === 'MATCH BEGIN') {
        this.#begun = true;
        this.#sent = 0;
        this.send(this.#pendingMatches);
      } else if (line === 'MATCH END - OK') this.#answer('ok');
      else if (line === 'MATCH END - ERROR') this.#answer('error');
      else if (line !== '') this.#log.warn({ line: line.slice(0, 80) }, 'event listener sent an unknown line; ignored');
    }
  }

  #answer(answer: 'ok' | 'error' | 'closed'): void {
    if (this.#answered) return;
    this.#answered = true;
    if (answer !== 'closed') this.#socket.end();
    this.#onAnswer(answer);
  }
}
