// One shard: the activations of this node's partitions p with p mod W = this shard. It runs their
// turns one message at a time per actor, commits durable state changes of a whole cycle in one
// SQLite transaction (in a cluster, also writes them to the partitions' changelogs in Redis), and
// only then lets replies out, in one batch per destination.

import type { ActorContext, AnyActorDefinition, AskOptions, Handler, TimerId } from './actor.js';
import { ActorRef, type MessageSender } from './actor-ref.js';
import {
  MSG_STRIDE,
  NO_REPLY,
  OWNED_HERE,
  REPLY_STRIDE,
  shardOrigin,
  type Batch,
} from './envelope.js';
import { ChangelogUnavailable, NotRunning, Overloaded, PartitionMoved, toWireError, UnknownActorType, UnknownHandler, type WireError } from './errors.js';
import type { DurableLog, LoggedRow } from './cluster/partition-changelog.js';
import type { Logger } from './log.js';
import { partitionOf } from './partition.js';
import { renderValue } from './inspector/render.js';
import { PendingAsks } from './pending-asks.js';
import type { SnapshotCodec, SnapshotRow, SnapshotStore } from './snapshot-store.js';
import type { ShardStats } from './system.js';
import { endWithError, traceOf, tracedAsk, tracedTell, tracingOn, turnSpan, untraced } from './tracing.js';
import type { Span } from '@opentelemetry/api';
import { getHeapStatistics } from 'node:v8';
import { ACTIVATED, FAILED, OVERLOADED, PASSIVATED, TIME_EVERY, TIMED, TURNS, TypeTally, snapshotTally, timeBucket, type TypeTallySnapshot } from './turn-tally.js';

/** Turns run in one go before the shard yields to its event loop (ports, timers, I/O). */
const TURN_BUDGET = 65_536;
/** Idle time is counted in ticks of this many ms, kept as small integers on each activation. */
const TICK_MS = 50;
/** Mailbox entries: handler, payload, origin, ask id. */
const MAIL_STRIDE = 4;
const ACTIVATE = '\u0000activate';
/** What the inspector learns of one actor in its shard (see Shard.inspectState). */
export interface InspectedState {
  /** Live in this shard, only in the snapshot store (durable, passivated), or neither. */
  found: 'active' | 'stored' | 'none';
  json: string;
  truncated: boolean;
  waiting: number;
  busy: boolean;
  timers: number;
}

/** Held replies: origin, ask id, value, activation. */
const HELD_STRIDE = 4;

/** An actor type as a shard runs it. */
export interface ShardActorType {
  readonly def: AnyActorDefinition;
  readonly name: string;
  readonly durable: boolean;
  readonly codec: SnapshotCodec;
  readonly idleTicks: number;
  readonly capacity: number;
  readonly handlers: Map<string, Handler<any>>;
  readonly handlerNames: string[];
  view: unknown;
  resources: unknown;
  /** Always-on counters of this type in this shard (read by the dashboard through control). */
  readonly tally: TypeTally;
}

export function shardActorType(def: AnyActorDefinition): ShardActorType {
  const handlers = new Map<string, Handler<any>>(Object.entries(def.handlers));
  return {
    def,
    name: def.type,
    durable: def.storage === 'durable',
    codec: def.snapshotCodec,
    idleTicks: Math.max(1, Math.ceil(def.idleTimeoutMs / TICK_MS)),
    capacity: def.mailboxCapacity,
    handlers,
    handlerNames: [...handlers.keys()],
    view: def.view ? def.view.create() : undefined,
    resources: undefined,
    tally: new TypeTally(),
  };
}

/** A live actor. Kept small: a million idle ones must fit in a few hundred MB. */
class Activation {
  readonly id: string;
  readonly type: ShardActorType;
  readonly partition: number;
  state: unknown;
  /** Flat queue of waiting messages (MAIL_STRIDE values each), null when empty. */
  mailbox: unknown[] | null = null;
  head = 0;
  queued = false;
  busy = false;
  dirty = false;
  lastTick: number;
  timers: Set<TimerId> | null = null;
  /** The partition's tenure on this node when this activation was made (see ShardOptions.tenures). */
  tenure = 0;

  constructor(id: string, type: ShardActorType, partition: number, state: unknown, tick: number) {
    this.id = id;
    this.type = type;
    this.partition = partition;
    this.state = state;
    this.lastTick = tick;
  }
}

/** Where a shard's outgoing batches go: index 0 is the main thread, 1 + k is shard k. */
export interface ShardLinks {
  post(dest: number, batch: Batch): void;
}

export interface ShardOptions {
  index: number;
  count: number;
  partitions: number;
  nodeId: string;
  types: Map<string, ShardActorType>;
  store: SnapshotStore;
  links: ShardLinks;
  /** Per-shard count of messages posted to it and not yet taken in (shared with all threads). */
  queued: Int32Array;
  queueCapacity: number;
  /** Per-partition ownership (OWNED_HERE or not), shared with the main thread. */
  ownership: Int32Array;
  /**
   * In a cluster: per-partition lease deadlines (epoch ms). A partition is served only while its
   * deadline is ahead, so a node resumed after a pause stops before its main thread notices.
   */
  leaseDeadlines?: Float64Array;
  /**
   * In a cluster: per partition, how many times this node stopped serving it (bumped by the main
   * thread as the partition leaves). An activation made in an earlier tenure is stale.
   */
  tenures?: Int32Array;
  /**
   * In a cluster: the partitions' changelogs in Redis. Committed durable states are written there
   * before their replies leave, and a partition taken over is rebuilt from it (`recover`). With
   * it, the views count only partitions this shard serves or is taking over.
   */
  changelog?: DurableLog;
  askTimeoutMs: number;
  log: Logger;
}

/** After a changelog write failed, the next try waits this long. */
const CHANGELOG_RETRY_MS = 500;
/** Messages held for a partition whose lease deadline passed are looked at again this often. */
const FENCE_CHECK_MS = 20;
/**
 * An ask held that long for a partition whose lease deadline passed (and that the main thread has
 * not yet taken away) fails with PARTITION_MOVED, so that its asker retries rather than waits.
 */
const FENCE_HOLD_MAX_MS = 1000;

/** The per-turn face of an activation handed to its handler. */
class TurnContext implements ActorContext<unknown>, MessageSender {
  #state: unknown;
  staged = false;
  /** Tells made during the turn, sent only if it ends well (MSG_STRIDE values each). */
  held: unknown[] | null = null;
  ended = false;
  /** The turn's span when the message that started it was traced (tracing.ts). */
  span: Span | undefined = undefined;
  /** performance.now() at the turn's start when this turn is timed (the dashboard watches), else 0. */
  startedAt = 0;
  readonly #shard: Shard;
  readonly #act: Activation;

  constructor(shard: Shard, act: Activation) {
    this.#shard = shard;
    this.#act = act;
    this.#state = act.state;
  }

  get state(): unknown {
    return this.#state;
  }

  set state(value: unknown) {
    this.#state = value;
    this.staged = true;
  }

  get key(): string {
    return this.#act.id.slice(this.#act.type.name.length + 1);
  }

  get self(): ActorRef<any> {
    return new ActorRef(this.#act.id, this.#act.partition, this);
  }

  get view(): any {
    return this.#act.type.view;
  }

  get resources(): any {
    return this.#act.type.resources;
  }

  get log(): Logger {
    return this.#shard.log;
  }

  now(): number {
    return Date.now();
  }

  ref(type: AnyActorDefinition | string, key: string): ActorRef<any> {
    const id = (typeof type === 'string' ? type : type.type) + '/' + key;
    return new ActorRef(id, partitionOf(id, this.#shard.partitions), this);
  }

  tell(target: ActorRef<any> | string, handler: string, message?: unknown): void;
  tell(id: string, partition: number, handler: string, message: unknown): void;
  tell(a: ActorRef<any> | string, b: string | number, c?: unknown, d?: unknown): void {
    let id: string, partition: number, handler: string, message: unknown;
    if (typeof b === 'number') [id, partition, handler, message] = [a as string, b, c as string, d];
    else [id, partition, handler, message] = [...this.#shard.resolve(a), b, c];
    if (this.span !== undefined) message = tracedTell(message, this.span);
    if (this.ended) {
      this.#shard.route(id, partition, handler, message, NO_REPLY, 0);
      return;
    }
    (this.held ??= []).push(id, partition, handler, message, NO_REPLY, 0);
  }

  ask<R>(target: ActorRef<any> | string, handler: string, message?: unknown, options?: AskOptions): Promise<R>;
  ask(id: string, partition: number, handler: string, message: unknown, timeoutMs?: number): Promise<unknown>;
  ask(a: ActorRef<any> | string, b: string | number, c?: unknown, d?: unknown, e?: number): Promise<unknown> {
    let id: string, partition: number, handler: string, message: unknown, timeoutMs: number | undefined;
    if (typeof b === 'number') [id, partition, handler, message, timeoutMs] = [a as string, b, c as string, d, e];
    else {
      [id, partition] = this.#shard.resolve(a);
      [handler, message, timeoutMs] = [b, c, (d as AskOptions | undefined)?.timeoutMs];
    }
    // A resumed async handler whose partition lost its lease meanwhile must not reach anyone.
    if (this.#shard.fenced(this.#act)) {
      this.held = null;
      return Promise.reject(new PartitionMoved(this.#act.id, this.#act.partition, 'its lease lapsed on this node during the turn'));
    }
    // Tells made earlier in this turn go first: per-sender order holds across tell and ask.
    this.releaseHeld();
    return this.#shard.ask(id, partition, handler, message, timeoutMs, this.span);
  }

  setTimer(delayMs: number, handler: string, message?: unknown, options?: { repeat?: boolean }): TimerId {
    return this.#shard.setTimer(this.#act, delayMs, handler, message, options?.repeat === true);
  }

  cancelTimer(id: TimerId): void {
    this.#shard.cancelTimer(this.#act, id);
  }

  releaseHeld(): void {
    const held = this.held;
    if (held === null) return;
    this.held = null;
    for (let i = 0; i < held.length; i += MSG_STRIDE) {
      this.#shard.route(held[i] as string, held[i + 1] as number, held[i + 2] as string, held[i + 3], NO_REPLY, 0);
    }
  }
}

export class Shard {
  readonly index: number;
  readonly count: number;
  readonly partitions: number;
  readonly nodeId: string;
  readonly log: Logger;
  readonly #types: Map<string, ShardActorType>;
  readonly #store: SnapshotStore;
  readonly #links: ShardLinks;
  readonly #queued: Int32Array;
  readonly #queueCapacity: number;
  readonly #ownership: Int32Array;
  readonly #deadlines: Float64Array | undefined;
  readonly #tenures: Int32Array | undefined;
  readonly #changelog: DurableLog | undefined;
  readonly #askTimeoutMs: number;
  readonly #origin: number;

  readonly #acts = new Map<string, Activation>();
  #ready: Activation[] = [];
  #readyHead = 0;
  #dirty: Activation[] = [];
  /** Replies of durable turns, held until their state is committed (HELD_STRIDE values each). */
  #heldReplies: unknown[] = [];
  // The changelog (cluster): one write in flight at a time, so a later state never lands before an
  // earlier one; what commits meanwhile gathers for the next write (the newest state per actor).
  /** Committed states not yet written to the changelog, by actor id. */
  #toLog = new Map<string, LoggedRow>();
  /** Per partition served here, the ring epoch its tenure began at: its rows carry it, and the changelog fences by it. */
  readonly #tenureEpochs = new Map<number, number>();
  /** Replies waiting for the next changelog write (HELD_STRIDE values each). */
  #waitingForLog: unknown[] = [];
  /** Actor ids of the write in flight. */
  #logging: ReadonlySet<string> | undefined;
  #logRetry: NodeJS.Timeout | undefined;
  /** Settles when no changelog write is in flight. */
  #logIdle: Promise<void> = Promise.resolve();
  /** With a changelog: the partitions whose stored actors the views count. */
  readonly #viewed = new Set<number>();
  /**
   * Messages of partitions whose lease deadline passed while the main thread still routes them
   * here (it has not noticed yet): held per partition, in order, until the partition is taken away
   * (they go to the main thread) or its lease is renewed (they run). Sending them back at once
   * would only bounce them between the threads until the main thread notices.
   */
  readonly #fencedMail = new Map<number, { since: number; m: unknown[] }>();
  #fenceTimer: NodeJS.Timeout | undefined;
  readonly #outM: unknown[][];
  readonly #outR: unknown[][];
  readonly #pending = new PendingAsks();
  readonly #timers = new Map<TimerId, NodeJS.Timeout>();
  #nextTimer = 1;
  #busy = 0;
  #inCycle = false;
  #cycleScheduled = false;
  #tick = 0;
  readonly #t0 = performance.now();
  #stopping = false;
  #sweeper: NodeJS.Timeout;
  #timing = false;
  #timingCount = 0;

  readonly #stats = {
    turns: 0,
    turnsFailed: 0,
    commits: 0,
    committedStates: 0,
    activationsTotal: 0,
    passivationsTotal: 0,
    rejectedOverloaded: 0,
    changelogWrites: 0,
    changelogStates: 0,
    changelogFailures: 0,
    changelogRefused: 0,
    fencedTurns: 0,
  };

  constructor(o: ShardOptions) {
    this.index = o.index;
    this.count = o.count;
    this.partitions = o.partitions;
    this.nodeId = o.nodeId;
    this.log = o.log;
    this.#types = o.types;
    this.#store = o.store;
    this.#links = o.links;
    this.#queued = o.queued;
    this.#queueCapacity = o.queueCapacity;
    this.#ownership = o.ownership;
    this.#deadlines = o.leaseDeadlines;
    this.#tenures = o.tenures;
    this.#changelog = o.changelog;
    this.#askTimeoutMs = o.askTimeoutMs;
    this.#origin = shardOrigin(o.index);
    this.#outM = Array.from({ length: o.count + 1 }, () => []);
    this.#outR = Array.from({ length: o.count + 1 }, () => []);
    let minIdle = Infinity;
    for (const t of o.types.values()) minIdle = Math.min(minIdle, t.def.idleTimeoutMs);
    const sweepEvery = Math.min(10_000, Math.max(TICK_MS, Math.floor(minIdle / 2)));
    this.#sweeper = setInterval(() => this.#passivateIdle(), Number.isFinite(sweepEvery) ? sweepEvery : 10_000).unref();
  }

  /**
   * Rebuilds the per-shard views of durable types from their stored snapshots. With a changelog
   * (a cluster) nothing is served yet: views fill as partitions are recovered.
   */
  restoreViews(): number {
    if (this.#changelog !== undefined) return 0;
    let n = 0;
    for (const type of this.#types.values()) {
      const view = type.def.view;
      if (!type.durable || !view?.restore) continue;
      for (const { actor, state } of this.#store.ofType(type.name)) {
        view.restore(type.view, actor.slice(type.name.length + 1), state);
        n++;
      }
    }
    return n;
  }

  // ---- inbound ---------------------------------------------------------------------------------

  /** A batch from the main thread or a peer shard. */
  receive(batch: Batch): void {
    const m = batch.m;
    if (m !== undefined && m.length > 0) {
      Atomics.sub(this.#queued, this.index, m.length / MSG_STRIDE);
      this.#inCycle = true;
      this.#tick = ((performance.now() - this.#t0) / TICK_MS) | 0;
      const ownership = this.#ownership;
      const deadlines = this.#deadlines;
      const nowMs = deadlines === undefined ? 0 : performance.timeOrigin + performance.now();
      try {
        for (let i = 0; i < m.length; i += MSG_STRIDE) {
          const id = m[i] as string;
          const partition = m[i + 1] as number;
          if (ownership[partition] !== OWNED_HERE) {
            // Not ours (any more): the main thread knows where it goes now.
            this.#outM[0]!.push(id, partition, m[i + 2], m[i + 3], m[i + 4], m[i + 5]);
            continue;
          }
          if (deadlines !== undefined && (!(deadlines[partition]! > nowMs) || (this.#fencedMail.size > 0 && this.#fencedMail.has(partition)))) {
            // Its lease lapsed (or messages before it wait for that to settle): hold it, in order.
            this.#holdFenced(id, partition, m[i + 2] as string, m[i + 3], m[i + 4] as number, m[i + 5] as number);
            continue;
          }
          let act = this.#current(this.#acts.get(id));
          if (act === undefined) {
            const activated = this.#activate(id, m[i + 1] as number);
            if (!(activated instanceof Activation)) {
              this.#reply(m[i + 4] as number, m[i + 5] as number, false, toWireError(activated));
              continue;
            }
            act = activated;
          }
          // The common case: an idle actor with nothing waiting runs the turn at once, with no
          // mailbox to allocate. Order holds: nothing of this actor is queued before it.
          if (act !== undefined && act.mailbox === null && !act.busy && !act.queued) {
            act.lastTick = this.#tick;
            this.#turn(act, m[i + 2] as string, m[i + 3], m[i + 4] as number, m[i + 5] as number);
          } else {
            this.#deliver(id, m[i + 1] as number, m[i + 2] as string, m[i + 3], m[i + 4] as number, m[i + 5] as number);
          }
        }
      } finally {
        this.#inCycle = false;
      }
    }
    const r = batch.r;
    if (r !== undefined) {
      for (let i = 0; i < r.length; i += REPLY_STRIDE) this.#pending.settle(r[i] as number, r[i + 1] === 1, r[i + 2]);
    }
    // Batches that arrive together (from the main thread and peers) are run, committed and
    // answered in one cycle: one transaction and one post per destination for all of them.
    this.#scheduleCycle();
  }

  /**
   * The activation if it belongs to its partition's current tenure here. One made before this node
   * last stopped serving the partition (a lease lost while paused, say, and the partition taken back
   * since) lived on while another node served the actor: it goes, and the messages waiting in its
   * mailbox go, in order, to a fresh activation (undefined is returned when there were none).
   */
  #current(act: Activation | undefined): Activation | undefined {
    if (act === undefined || this.#tenures === undefined || act.busy) return act;
    if (act.tenure === Atomics.load(this.#tenures, act.partition)) return act;
    this.#clearTimers(act);
    this.#acts.delete(act.id);
    const mb = act.mailbox;
    act.mailbox = null;
    // The activate marker was the stale activation's own; a fresh one queues its own.
    if (mb !== null) for (let i = act.head; i < mb.length; i += MAIL_STRIDE) if (mb[i] !== ACTIVATE) this.#deliver(act.id, act.partition, mb[i] as string, mb[i + 1], mb[i + 2] as number, mb[i + 3] as number);
    return this.#acts.get(act.id);
  }

  #deliver(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    let act = this.#current(this.#acts.get(id));
    if (act === undefined) {
      const activated = this.#activate(id, partition);
      if (!(activated instanceof Activation)) {
        this.#reply(origin, askId, false, toWireError(activated));
        return;
      }
      act = activated;
    }
    let mb = act.mailbox;
    if (mb === null) {
      mb = act.mailbox = [];
      act.head = 0;
    } else if (mb.length - act.head >= act.type.capacity * MAIL_STRIDE) {
      this.#stats.rejectedOverloaded++;
      act.type.tally.counts[OVERLOADED]++;
      if (origin !== NO_REPLY) this.#reply(origin, askId, false, toWireError(new Overloaded(`the mailbox of ${id}`)));
      else if (this.#stats.rejectedOverloaded % 1000 === 1) this.log.warn({ actor: id, rejected: this.#stats.rejectedOverloaded }, 'mailbox full; dropping tells');
      return;
    }
    mb.push(handler, payload, origin, askId);
    act.lastTick = this.#tick;
    if (!act.queued && !act.busy) {
      act.queued = true;
      this.#ready.push(act);
    }
  }

  #activate(id: string, partition: number): Activation | Error {
    const slash = id.indexOf('/');
    const type = slash > 0 ? this.#types.get(id.slice(0, slash)) : undefined;
    if (type === undefined) return new UnknownActorType(slash > 0 ? id.slice(0, slash) : id, [...this.#types.keys()]);
    const key = id.slice(slash + 1);
    let state: unknown;
    try {
      if (type.durable) state = this.#store.load(id);
      if (state === undefined) state = type.def.initialState(key);
    } catch (err) {
      this.log.error({ actor: id, err }, 'activation failed');
      return err instanceof Error ? err : new Error(String(err));
    }
    const act = new Activation(id, type, partition, state, this.#tick);
    if (this.#tenures !== undefined) act.tenure = Atomics.load(this.#tenures, partition);
    this.#acts.set(id, act);
    this.#stats.activationsTotal++;
    type.tally.counts[ACTIVATED]++;
    if (type.def.activate) {
      act.mailbox = [ACTIVATE, undefined, NO_REPLY, 0];
      act.queued = true;
      this.#ready.push(act);
    }
    return act;
  }

  // ---- turns -----------------------------------------------------------------------------------

  /** Runs ready actors until none is left or the budget is spent; true if work remains. */
  #runReady(): boolean {
    let budget = TURN_BUDGET;
    const ready = this.#ready;
    const deadlines = this.#deadlines;
    let i = this.#readyHead;
    while (i < ready.length && budget > 0) {
      const act = ready[i++]!;
      act.queued = false;
      // Fencing at every turn (cluster): a visit runs only while its partition's lease is ahead by
      // this node's clock, and only for an activation of the partition's current tenure here. One
      // typed-array read and one clock read per visit, however many messages the visit runs.
      if (deadlines !== undefined && !act.busy && act.mailbox !== null) {
        if (!(deadlines[act.partition]! > performance.timeOrigin + performance.now())) {
          this.#fence(act);
          continue;
        }
        if (this.#tenures !== undefined && act.tenure !== Atomics.load(this.#tenures, act.partition)) {
          this.#current(act); // its mail goes to a fresh activation, which is queued if it has any
          continue;
        }
      }
      // A visit runs only the messages already waiting: an actor that keeps telling itself
      // must not starve the others (nor outrun the mailboxes it fills).
      let quantum = act.mailbox === null ? 0 : (act.mailbox.length - act.head) / MAIL_STRIDE;
      while (quantum-- > 0 && !act.busy && act.mailbox !== null && budget-- > 0) {
        const mb = act.mailbox;
        const h = act.head;
        const handler = mb[h] as string;
        const payload = mb[h + 1];
        const origin = mb[h + 2] as number;
        const askId = mb[h + 3] as number;
        const next = h + MAIL_STRIDE;
        if (next >= mb.length) {
          act.mailbox = null;
          act.head = 0;
        } else if (next > 4096 && next * 2 > mb.length) {
          mb.splice(0, next);
          act.head = 0;
        } else {
          mb[h + 1] = undefined;
          act.head = next;
        }
        this.#turn(act, handler, payload, origin, askId);
      }
      if (!act.busy && act.mailbox !== null && !act.queued) {
        act.queued = true;
        ready.push(act);
      }
    }
    if (i >= ready.length) {
      ready.length = 0;
      this.#readyHead = 0;
      return false;
    }
    if (i > 8192) {
      this.#ready = ready.slice(i);
      this.#readyHead = 0;
    } else this.#readyHead = i;
    return true;
  }

  #turn(act: Activation, handler: string, payload: unknown, origin: number, askId: number): void {
    // A message sent inside a sampled span carries it (whether or not this thread records spans).
    const traceparent = traceOf(payload);
    if (traceparent !== undefined) payload = untraced(payload);
    const fn = handler === ACTIVATE ? act.type.def.activate : act.type.handlers.get(handler);
    if (fn === undefined) {
      this.#stats.turnsFailed++;
      act.type.tally.counts[FAILED]++;
      this.#reply(origin, askId, false, toWireError(new UnknownHandler(act.type.name, handler, act.type.handlerNames)));
      return;
    }
    const ctx = new TurnContext(this, act);
    if (traceparent !== undefined && tracingOn) {
      ctx.span = turnSpan(act.id, handler, origin !== NO_REPLY, traceparent, { 'troupe.node': this.nodeId, 'troupe.shard': this.index, 'troupe.partition': act.partition });
    }
    if (this.#timing && ++this.#timingCount % TIME_EVERY === 0) ctx.startedAt = performance.now();
    let result: unknown;
    try {
      result = fn(ctx as ActorContext<unknown>, payload);
    } catch (err) {
      this.#failed(act, ctx, handler, origin, askId, err);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      act.busy = true;
      this.#busy++;
      (result as PromiseLike<unknown>).then(
        (value) => this.#asyncEnded(act, ctx, handler, origin, askId, true, value),
        (err) => this.#asyncEnded(act, ctx, handler, origin, askId, false, err),
      );
      return;
    }
    this.#completed(act, ctx, origin, askId, result);
  }

  #completed(act: Activation, ctx: TurnContext, origin: number, askId: number, value: unknown): void {
    this.#stats.turns++;
    act.type.tally.counts[TURNS]++;
    if (ctx.startedAt !== 0) this.#timed(act.type.tally, ctx.startedAt);
    ctx.ended = true;
    if (ctx.span !== undefined) {
      if (ctx.staged && act.type.durable) ctx.span.setAttribute('troupe.durable_change', true);
      ctx.span.end();
    }
    let hold = false;
    if (ctx.staged) {
      act.state = ctx.state;
      if (act.type.durable) {
        hold = true;
        if (!act.dirty) {
          act.dirty = true;
          this.#dirty.push(act);
        }
      }
    }
    ctx.releaseHeld();
    if (origin === NO_REPLY) return;
    if (hold) this.#heldReplies.push(origin, askId, value, act);
    else if (act.type.durable && this.#unlogged(act.id)) this.#waitingForLog.push(origin, askId, value, act);
    else this.#reply(origin, askId, true, value);
  }

  /** A reply must not show a state that a crash of this node could still lose. */
  #unlogged(id: string): boolean {
    return this.#changelog !== undefined && (this.#toLog.has(id) || this.#logging?.has(id) === true);
  }

  #failed(act: Activation, ctx: TurnContext, handler: string, origin: number, askId: number, err: unknown): void {
    this.#stats.turnsFailed++;
    act.type.tally.counts[FAILED]++;
    if (ctx.startedAt !== 0) this.#timed(act.type.tally, ctx.startedAt);
    ctx.ended = true;
    ctx.held = null;
    if (ctx.span !== undefined) endWithError(ctx.span, err);
    const wire = toWireError(err);
    if (handler === ACTIVATE) {
      // An actor whose activation failed must not serve from a state it could not load.
      this.log.error({ actor: act.id, err: wire }, 'activate hook failed; the activation is dropped');
      this.#dropActivation(act, wire);
      return;
    }
    if (origin === NO_REPLY) this.log.warn({ actor: act.id, handler, err: wire }, 'handler failed on a tell');
    else this.#reply(origin, askId, false, wire);
  }

  #asyncEnded(act: Activation, ctx: TurnContext, handler: string, origin: number, askId: number, ok: boolean, value: unknown): void {
    act.busy = false;
    this.#busy--;
    if (this.fenced(act)) {
      // The lease lapsed (or the partition left and came back) while the handler awaited: another
      // node may run this actor now. Nothing of the turn is kept or sent; its asker retries.
      this.#stats.turnsFailed++;
      this.#stats.fencedTurns++;
      ctx.ended = true;
      ctx.held = null;
      const err = new PartitionMoved(act.id, act.partition, 'its lease lapsed on this node before the turn ended');
      if (ctx.span !== undefined) endWithError(ctx.span, err);
      this.#reply(origin, askId, false, toWireError(err));
      if (this.#acts.get(act.id) === act) this.#fence(act);
      this.#scheduleCycle();
      return;
    }
    if (ok) this.#completed(act, ctx, origin, askId, value);
    else this.#failed(act, ctx, handler, origin, askId, value);
    if (this.#acts.get(act.id) === act && act.mailbox !== null && !act.queued) {
      act.queued = true;
      this.#ready.push(act);
    }
    this.#scheduleCycle();
  }

  /**
   * Cluster: true when a turn of this activation must not run or end here now: its partition's
   * lease deadline passed by this node's clock, or the partition stopped being served here since
   * the activation was made (a new tenure). Alone (no deadlines), never.
   */
  fenced(act: Activation): boolean {
    const deadlines = this.#deadlines;
    if (deadlines === undefined) return false;
    if (!(deadlines[act.partition]! > performance.timeOrigin + performance.now())) return true;
    return this.#tenures !== undefined && act.tenure !== Atomics.load(this.#tenures, act.partition);
  }

  /** Retires an activation whose partition lost its lease: its waiting messages are held for the partition (or go to the main thread). */
  #fence(act: Activation): void {
    this.#clearTimers(act);
    if (this.#acts.get(act.id) === act) this.#acts.delete(act.id);
    const mb = act.mailbox;
    act.mailbox = null;
    if (mb === null) return;
    for (let i = act.head; i < mb.length; i += MAIL_STRIDE) {
      if (mb[i] !== ACTIVATE) this.#holdFenced(act.id, act.partition, mb[i] as string, mb[i + 1], mb[i + 2] as number, mb[i + 3] as number);
    }
  }

  #holdFenced(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    this.#stats.fencedTurns++;
    if (Atomics.load(this.#ownership, partition) !== OWNED_HERE) {
      // The main thread already knows the partition is not served here: it routes the message on.
      this.#outM[0]!.push(id, partition, handler, payload, origin, askId);
      return;
    }
    let held = this.#fencedMail.get(partition);
    if (held === undefined) this.#fencedMail.set(partition, (held = { since: performance.now(), m: [] }));
    held.m.push(id, partition, handler, payload, origin, askId);
    this.#fenceTimer ??= setInterval(() => this.#settleFenced(), FENCE_CHECK_MS);
  }

  /** Messages held for fenced partitions: to the main thread once the partition left, run again once its lease is renewed. */
  #settleFenced(only?: ReadonlySet<number>): void {
    const now = performance.now();
    const nowMs = performance.timeOrigin + now;
    let moved = false;
    for (const [p, held] of [...this.#fencedMail]) {
      if (only !== undefined && !only.has(p)) continue;
      const m = held.m;
      if (Atomics.load(this.#ownership, p) !== OWNED_HERE || only !== undefined) {
        this.#fencedMail.delete(p);
        for (let i = 0; i < m.length; i += MSG_STRIDE) this.#outM[0]!.push(m[i], p, m[i + 2], m[i + 3], m[i + 4], m[i + 5]);
      } else if (this.#deadlines![p]! > nowMs) {
        this.#fencedMail.delete(p);
        for (let i = 0; i < m.length; i += MSG_STRIDE) this.#deliver(m[i] as string, p, m[i + 2] as string, m[i + 3], m[i + 4] as number, m[i + 5] as number);
      } else if (now - held.since > FENCE_HOLD_MAX_MS) {
        // Still not settled: asks fail (retryable), tells go to the main thread to be routed again.
        this.#fencedMail.delete(p);
        for (let i = 0; i < m.length; i += MSG_STRIDE) {
          if (m[i + 4] === NO_REPLY) this.#outM[0]!.push(m[i], p, m[i + 2], m[i + 3], m[i + 4], m[i + 5]);
          else this.#reply(m[i + 4] as number, m[i + 5] as number, false, toWireError(new PartitionMoved(m[i] as string, p, 'its lease lapsed on this node and is not renewed yet')));
        }
      } else continue;
      moved = true;
    }
    if (this.#fencedMail.size === 0 && this.#fenceTimer !== undefined) {
      clearInterval(this.#fenceTimer);
      this.#fenceTimer = undefined;
    }
    if (moved) {
      if (this.#inCycle) return;
      this.#cycle();
    }
  }

  #dropActivation(act: Activation, reason: WireError): void {
    this.#acts.delete(act.id);
    const mb = act.mailbox;
    act.mailbox = null;
    if (mb) {
      for (let i = act.head; i < mb.length; i += MAIL_STRIDE) {
        this.#reply(mb[i + 2] as number, mb[i + 3] as number, false, reason);
      }
    }
    this.#clearTimers(act);
  }

  // ---- outbound --------------------------------------------------------------------------------

  /** Sends a message from this shard: delivered here, to a peer shard, or via the main thread. */
  route(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    if (this.#ownership[partition] === OWNED_HERE) {
      const s = partition % this.count;
      if (s === this.index) {
        this.#deliver(id, partition, handler, payload, origin, askId);
        if (!this.#inCycle) this.#scheduleCycle();
        return;
      }
      const out = this.#outM[s + 1]!;
      if (Atomics.load(this.#queued, s) + out.length / MSG_STRIDE >= this.#queueCapacity) throw new Overloaded(`the queue of shard ${s}`);
      out.push(id, partition, handler, payload, origin, askId);
    } else {
      this.#outM[0]!.push(id, partition, handler, payload, origin, askId);
    }
    if (!this.#inCycle) this.#scheduleCycle();
  }

  /** An ask from one of this shard's actors; `span`: the asking turn's, when it is traced. */
  ask(id: string, partition: number, handler: string, message: unknown, timeoutMs?: number, span?: Span): Promise<unknown> {
    if (this.#stopping) return Promise.reject(new NotRunning(`shard ${this.index}`));
    const { id: askId, promise } = this.#pending.create(id, handler, timeoutMs ?? this.#askTimeoutMs);
    if (span !== undefined && tracingOn) message = tracedAsk(id, partition, handler, message, span, promise);
    try {
      this.route(id, partition, handler, message, this.#origin, askId);
    } catch (err) {
      this.#pending.fail(askId, err);
    }
    return promise;
  }

  resolve(target: ActorRef<any> | string | { id: string }): [string, number] {
    const id = typeof target === 'string' ? target : target.id;
    const partition = typeof target === 'object' && typeof (target as ActorRef).partition === 'number' ? (target as ActorRef).partition : partitionOf(id, this.partitions);
    return [id, partition];
  }

  #reply(origin: number, askId: number, ok: boolean, value: unknown): void {
    if (origin === NO_REPLY) return;
    this.#outR[origin - 1]!.push(askId, ok ? 1 : 0, value);
    if (!this.#inCycle) this.#scheduleCycle();
  }

  // ---- cycle: turns, commit, flush ------------------------------------------------------------

  #scheduleCycle(): void {
    if (this.#cycleScheduled) return;
    this.#cycleScheduled = true;
    setImmediate(() => {
      this.#cycleScheduled = false;
      this.#cycle();
    });
  }

  #cycle(): void {
    this.#inCycle = true;
    this.#tick = ((performance.now() - this.#t0) / TICK_MS) | 0;
    let more = false;
    try {
      more = this.#runReady();
      this.#commit();
      this.#flush();
    } finally {
      this.#inCycle = false;
    }
    if (more) this.#scheduleCycle();
  }

  #commit(): void {
    const dirty = this.#dirty;
    const held = this.#heldReplies;
    if (dirty.length === 0 && held.length === 0) return;
    this.#dirty = [];
    this.#heldReplies = [];
    // Encode first, one actor at a time: a state that cannot be stored fails only its own turns.
    const rows: SnapshotRow[] = [];
    let unstorable: Map<Activation, WireError> | undefined;
    for (const act of dirty) {
      act.dirty = false;
      try {
        rows.push({ id: act.id, partition: act.partition, blob: this.#store.encode(act.state, act.type.codec), epoch: this.#changelog === undefined ? undefined : this.#tenureEpochs.get(act.partition) } as LoggedRow);
      } catch (err) {
        (unstorable ??= new Map()).set(act, toWireError(err));
      }
    }
    let failed: WireError | undefined;
    try {
      this.#store.commit(rows);
      this.#stats.commits++;
      this.#stats.committedStates += rows.length;
    } catch (err) {
      failed = toWireError(err);
      this.log.error({ err: failed, states: rows.length }, 'snapshot commit failed; failing the turns it carried');
    }
    const logged = this.#changelog !== undefined && failed === undefined;
    if (logged) for (const row of rows) this.#toLog.set(row.id, row);
    for (let i = 0; i < held.length; i += HELD_STRIDE) {
      const act = held[i + 3] as Activation;
      const why = failed ?? unstorable?.get(act);
      if (why === undefined && logged) this.#waitingForLog.push(held[i], held[i + 1], held[i + 2], act);
      else this.#reply(held[i] as number, held[i + 1] as number, why === undefined, why ?? held[i + 2]);
    }
    if (logged) this.#writeLog();
    // What was not committed must not be served: those actors reload the last committed state.
    for (const act of dirty) {
      const why = failed ?? unstorable?.get(act);
      if (why !== undefined && !act.busy && this.#acts.get(act.id) === act) this.#dropActivation(act, why);
    }
  }

  /** Starts the next changelog write, unless one is in flight or nothing waits for one. */
  #writeLog(): void {
    const changelog = this.#changelog;
    if (changelog === undefined || this.#logging !== undefined || this.#logRetry !== undefined) return;
    if (this.#toLog.size === 0 && this.#waitingForLog.length === 0) return;
    const rows = [...this.#toLog.values()];
    const waiting = this.#waitingForLog;
    this.#toLog = new Map();
    this.#waitingForLog = [];
    this.#logging = new Set(rows.map((r) => r.id));
    const write = rows.length === 0 ? Promise.resolve<ReadonlySet<number>>(new Set()) : changelog.append(rows);
    this.#logIdle = write.then(
      (refused) => {
        this.#logging = undefined;
        if (rows.length > 0) {
          this.#stats.changelogWrites++;
          this.#stats.changelogStates += rows.length;
          if (refused.size > 0) for (const row of rows) if (refused.has(row.partition)) this.#stats.changelogRefused++;
        }
        for (let i = 0; i < waiting.length; i += HELD_STRIDE) {
          const act = waiting[i + 3] as Activation;
          const moved = refused.has(act.partition);
          this.#reply(waiting[i] as number, waiting[i + 1] as number, !moved, moved ? toWireError(new PartitionMoved(act.id, act.partition)) : waiting[i + 2]);
        }
        if (refused.size > 0) this.log.warn({ partitions: [...refused] }, 'changelog refused states of partitions whose lease this node no longer holds');
        this.#writeLog();
      },
      (err: Error) => {
        this.#logging = undefined;
        this.#stats.changelogFailures++;
        // Write these again with the next batch (a newer state of the same actor replaces its row),
        // after a pause; whoever waited is told the change is not acknowledged.
        for (const row of rows) if (!this.#toLog.has(row.id)) this.#toLog.set(row.id, row);
        for (let i = 0; i < waiting.length; i += HELD_STRIDE) {
          const act = waiting[i + 3] as Activation;
          this.#reply(waiting[i] as number, waiting[i + 1] as number, false, toWireError(new ChangelogUnavailable(act.id, err.message)));
        }
        this.log.error({ err: err.message, states: rows.length }, `writing the partition changelog failed; retrying in ${CHANGELOG_RETRY_MS} ms`);
        this.#logRetry = setTimeout(() => {
          this.#logRetry = undefined;
          this.#writeLog();
        }, CHANGELOG_RETRY_MS);
      },
    );
  }

  /** Resolves when every state committed so far is in the changelog (or its write failed), or at the deadline. */
  async #changelogSettled(until: number, partitions?: ReadonlySet<number>): Promise<void> {
    if (this.#changelog === undefined) return;
    const pending = () => {
      if (this.#logging !== undefined) return true;
      for (const row of this.#toLog.values()) if (partitions === undefined || partitions.has(row.partition)) return true;
      return false;
    };
    while (pending() && performance.now() < until) {
      this.#writeLog();
      await Promise.race([this.#logIdle, new Promise((r) => setTimeout(r, 20))]);
    }
  }

  #flush(): void {
    for (let dest = 0; dest <= this.count; dest++) {
      const m = this.#outM[dest]!;
      const r = this.#outR[dest]!;
      if (m.length === 0 && r.length === 0) continue;
      if (dest === this.index + 1) {
        // Replies to asks made by this shard's own actors.
        this.#outR[dest] = [];
        for (let i = 0; i < r.length; i += REPLY_STRIDE) this.#pending.settle(r[i] as number, r[i + 1] === 1, r[i + 2]);
        continue;
      }
      this.#outM[dest] = [];
      this.#outR[dest] = [];
      if (dest > 0 && m.length > 0) Atomics.add(this.#queued, dest - 1, m.length / MSG_STRIDE);
      const batch: Batch = {};
      if (m.length > 0) batch.m = m;
      if (r.length > 0) batch.r = r;
      this.#links.post(dest, batch);
    }
  }

  // ---- timers and passivation -----------------------------------------------------------------

  setTimer(act: Activation, delayMs: number, handler: string, message: unknown, repeat: boolean): TimerId {
    const id = this.#nextTimer++;
    const fire = (): void => {
      if (!repeat) {
        this.#timers.delete(id);
        act.timers?.delete(id);
        if (act.timers?.size === 0) act.timers = null;
      }
      if (this.#acts.get(act.id) !== act) return;
      this.#deliver(act.id, act.partition, handler, message, NO_REPLY, 0);
      this.#scheduleCycle();
    };
    const timer = repeat ? setInterval(fire, Math.max(1, delayMs)) : setTimeout(fire, Math.max(0, delayMs));
    this.#timers.set(id, timer);
    (act.timers ??= new Set()).add(id);
    return id;
  }

  cancelTimer(act: Activation, id: TimerId): void {
    const timer = this.#timers.get(id);
    if (timer === undefined || !act.timers?.has(id)) return;
    clearTimeout(timer);
    this.#timers.delete(id);
    act.timers.delete(id);
    if (act.timers.size === 0) act.timers = null;
  }

  #clearTimers(act: Activation): void {
    if (act.timers === null) return;
    for (const id of act.timers) {
      clearTimeout(this.#timers.get(id));
      this.#timers.delete(id);
    }
    act.timers = null;
  }

  #passivateIdle(): void {
    const tick = ((performance.now() - this.#t0) / TICK_MS) | 0;
    let n = 0;
    for (const act of this.#acts.values()) {
      if (act.busy || act.queued || act.dirty || act.mailbox !== null || act.timers !== null) continue;
      if (tick - act.lastTick >= act.type.idleTicks) {
        this.#acts.delete(act.id);
        act.type.tally.counts[PASSIVATED]++;
        n++;
      }
    }
    this.#stats.passivationsTotal += n;
  }

  // ---- control ---------------------------------------------------------------------------------

  stats(): ShardStats {
    return {
      shard: this.index,
      activations: this.#acts.size,
      partitionsHeld: Math.ceil(this.partitions / this.count),
      queued: Atomics.load(this.#queued, this.index),
      heapUsed: getHeapStatistics().used_heap_size,
      ...this.#stats,
    };
  }

  /** Turns times when on (the dashboard is watching); off, a turn pays one boolean test. */
  setTurnTiming(on: boolean): void {
    this.#timing = on;
  }

  #timed(tally: TypeTally, startedAt: number): void {
    tally.counts[TIMED]++;
    tally.times[timeBucket(performance.now() - startedAt)]++;
  }

  /** Every type's counters and live activations (a walk of the activations when several types share the shard). */
  typeTallies(): TypeTallySnapshot[] {
    const live = new Map<ShardActorType, number>();
    if (this.#types.size === 1) live.set(this.#types.values().next().value!, this.#acts.size);
    else for (const act of this.#acts.values()) live.set(act.type, (live.get(act.type) ?? 0) + 1);
    return [...this.#types.values()].map((t) => snapshotTally(t.name, t.tally, live.get(t) ?? 0));
  }

  listActors(type: string | undefined, limit: number): string[] {
    const out: string[] = [];
    for (const act of this.#acts.values()) {
      if (out.length >= limit) break;
      if (type === undefined || act.type.name === type) out.push(act.id);
    }
    return out;
  }

  readState(id: string): unknown {
    return this.#acts.get(id)?.state;
  }

  /**
   * For the inspector: an actor's state rendered here, bounded (only the JSON text leaves the
   * thread), from its activation or else from its last committed snapshot; nothing is activated.
   */
  inspectState(id: string, maxBytes: number): InspectedState {
    const act = this.#acts.get(id);
    if (act) {
      const { json, truncated } = renderValue(act.state, { maxBytes });
      const waiting = act.mailbox === null ? 0 : (act.mailbox.length - act.head) / MAIL_STRIDE;
      return { found: 'active', json, truncated, waiting, busy: act.busy, timers: act.timers?.size ?? 0 };
    }
    const type = this.#types.get(id.slice(0, id.indexOf('/')));
    const stored = type?.durable ? this.#store.load(id) : undefined;
    if (stored === undefined) return { found: 'none', json: '', truncated: false, waiting: 0, busy: false, timers: 0 };
    return { found: 'stored', ...renderValue(stored, { maxBytes }), waiting: 0, busy: false, timers: 0 };
  }

  query(typeName: string, args: unknown): unknown {
    const type = this.#types.get(typeName);
    if (!type) throw new UnknownActorType(typeName, [...this.#types.keys()]);
    if (!type.def.view) throw new TypeError(`actor type "${typeName}" has no view to query`);
    return type.def.view.query(type.view, args);
  }

  /**
   * Gives up partitions (a cluster hand-off): runs what their actors already accepted, commits,
   * and returns every actor's state in them (live volatile ones and all stored durable ones) as
   * flat rows `id, partition, state`; then forgets them here, from memory, views and disk.
   */
  async handOff(partitions: readonly number[], deadlineMs = 10_000): Promise<unknown[]> {
    const leaving = new Set(partitions);
    const until = performance.now() + deadlineMs;
    for (;;) {
      let pending = false;
      for (const act of this.#acts.values()) {
        if (leaving.has(act.partition) && (act.busy || act.queued || act.mailbox !== null || act.dirty)) {
          pending = true;
          break;
        }
      }
      if (!pending) break;
      if (performance.now() > until) {
        this.log.warn({ partitions: partitions.length }, 'hand-off: turns still running at the deadline; shipping the last committed state');
        break;
      }
      this.#cycle();
      await new Promise((r) => setTimeout(r, 1));
    }
    this.#commit();
    this.#flush();
    // With a changelog the new owner rebuilds durable actors from it: wait until it holds them all.
    await this.#changelogSettled(until, leaving);
    this.#flush();
    const rows: unknown[] = [];
    const shipped = new Set<string>();
    for (const act of [...this.#acts.values()]) {
      if (!leaving.has(act.partition)) continue;
      if (!act.type.durable) rows.push(act.id, act.partition, act.state);
      this.#clearTimers(act);
      this.#acts.delete(act.id);
      act.mailbox = null;
      if (act.type.durable) continue;
      shipped.add(act.id);
    }
    if (this.#changelog === undefined) {
      for (const { actor, partition, state } of this.#store.ofPartitions(partitions)) {
        if (shipped.has(actor)) continue;
        rows.push(actor, partition, state);
        const type = this.#types.get(actor.slice(0, actor.indexOf('/')));
        type?.def.view?.evict?.(type.view, actor.slice(type.name.length + 1), state);
      }
    } else {
      this.#countInViews(partitions.filter((p) => this.#viewed.delete(p)), false);
    }
    this.#store.deletePartitions(partitions);
    return rows;
  }

  /** Takes over partitions' actors from a hand-off: durable states are stored, volatile ones go live. */
  install(rows: readonly unknown[]): number {
    const durable: SnapshotRow[] = [];
    let n = 0;
    let staleRows = 0;
    for (let i = 0; i + 2 < rows.length; i += 3) {
      const id = rows[i] as string;
      const partition = rows[i + 1] as number;
      const state = rows[i + 2];
      // A hand-off comes before its sender lets the lease go, so never for a partition served here:
      // one that does was sent by a node whose lease lapsed, and what it ships is older than ours.
      if (Atomics.load(this.#ownership, partition) === OWNED_HERE) {
        staleRows++;
        continue;
      }
      const slash = id.indexOf('/');
      const type = slash > 0 ? this.#types.get(id.slice(0, slash)) : undefined;
      if (type === undefined) {
        this.log.warn({ actor: id }, 'hand-off row of an actor type this node does not load; skipped');
        continue;
      }
      n++;
      // The shipped state is the newest: an activation this node kept from before (its lease
      // lapsed while it was paused, say) must not live on beside it.
      const old = this.#acts.get(id);
      if (old !== undefined) this.#retire(old);
      // With a changelog, durable actors come from it when the partition is recovered.
      if (type.durable && this.#changelog !== undefined) continue;
      if (type.durable) {
        const key = id.slice(slash + 1);
        if (type.def.view?.evict) {
          // The view counted what this node had: take that out before counting the shipped state.
          const before = old !== undefined ? old.state : this.#store.load(id);
          if (before !== undefined) type.def.view.evict(type.view, key, before);
        }
        durable.push({ id, partition, blob: this.#store.encode(state, type.codec) });
        type.def.view?.restore?.(type.view, key, state);
      } else {
        const act = new Activation(id, type, partition, state, this.#tick);
        if (this.#tenures !== undefined) act.tenure = Atomics.load(this.#tenures, partition);
        this.#acts.set(id, act);
      }
    }
    if (staleRows > 0) this.log.warn({ actors: staleRows }, 'hand-off rows for partitions already served here were dropped (sent by a node whose lease had lapsed)');
    this.#store.commit(durable);
    this.#flush();
    return n;
  }

  /**
   * Forgets partitions this node stopped serving without handing them off (its lease lapsed or was
   * taken, or it was declared dead): their activations leave memory, and the messages waiting in
   * their mailboxes go back to the main thread, which routes them to the partitions' owners. So a
   * partition that comes back later starts from what is stored or shipped, never from an
   * activation that lived on while another node served it. Turns in flight are left to finish.
   */
  forget(partitions: readonly number[]): number {
    const gone = new Set(partitions);
    let n = 0;
    for (const act of [...this.#acts.values()]) {
      if (!gone.has(act.partition) || act.busy) continue;
      this.#retire(act);
      n++;
    }
    // Another node counts these partitions' actors now; what is stored of them stays until recovered.
    if (this.#changelog !== undefined) this.#countInViews(partitions.filter((p) => this.#viewed.delete(p)), false);
    if (this.#fencedMail.size > 0) this.#settleFenced(gone);
    this.#flush();
    return n;
  }

  /**
   * Cluster: takes over partitions from their changelogs, before serving them. A partition that has
   * a changelog gets exactly the states logged there (whatever this node stored of it is older); one
   * without (nothing durable was ever logged of it, or Redis lost it) keeps what this node stored,
   * and that is logged now. The views then count the partitions' actors. Returns how many there are.
   */
  async recover(partitions: readonly number[], epoch?: number): Promise<number> {
    const changelog = this.#changelog;
    if (changelog === undefined || partitions.length === 0) return 0;
    const taking = new Set(partitions);
    // What an earlier tenure committed and could not log is not acknowledged, and is older than the
    // changelog read now: written later, it would overwrite newer states (the fence refuses it too).
    this.#dropUnlogged(taking);
    const logged = await changelog.read(partitions, epoch);
    for (const p of partitions) {
      if (epoch === undefined) this.#tenureEpochs.delete(p);
      else this.#tenureEpochs.set(p, epoch);
    }
    this.#countInViews(partitions.filter((p) => this.#viewed.delete(p)), false);
    // Activations of durable actors made in an earlier tenure here must not outlive their state.
    for (const act of [...this.#acts.values()]) if (act.type.durable && taking.has(act.partition) && !act.busy) this.#retire(act);
    const fromLog = partitions.filter((p) => logged.has(p));
    this.#store.replacePartitions(fromLog, fromLog.flatMap((p) => logged.get(p)!));
    const seed: LoggedRow[] = [];
    for (const p of partitions) {
      if (logged.has(p)) continue;
      for (const row of this.#store.rowsOf(p)) seed.push({ id: row.id, partition: p, blob: row.blob, epoch });
    }
    if (seed.length > 0) {
      const refused = await changelog.append(seed);
      this.log.info({ states: seed.length, partitions: partitions.length - fromLog.length, refused: refused.size }, 'partitions without a changelog: logged what this node had stored of them');
    }
    for (const p of partitions) this.#viewed.add(p);
    this.#countInViews(partitions, true);
    this.#flush();
    return fromLog.reduce((n, p) => n + logged.get(p)!.length, seed.length);
  }

  /** Forgets states of these partitions not yet logged; whoever waits for them hears PARTITION_MOVED. */
  #dropUnlogged(partitions: ReadonlySet<number>): void {
    for (const [id, row] of this.#toLog) if (partitions.has(row.partition)) this.#toLog.delete(id);
    const waiting = this.#waitingForLog;
    if (waiting.length === 0) return;
    const kept: unknown[] = [];
    for (let i = 0; i < waiting.length; i += HELD_STRIDE) {
      const act = waiting[i + 3] as Activation;
      if (partitions.has(act.partition)) this.#reply(waiting[i] as number, waiting[i + 1] as number, false, toWireError(new PartitionMoved(act.id, act.partition)));
      else kept.push(waiting[i], waiting[i + 1], waiting[i + 2], act);
    }
    this.#waitingForLog = kept;
  }

  /** Adds the stored actors of some partitions to their types' views, or takes them out; returns how many. */
  #countInViews(partitions: readonly number[], add: boolean): number {
    let viewed = false;
    for (const type of this.#types.values()) if (type.durable && type.def.view) viewed = true;
    if (!viewed || partitions.length === 0) return 0;
    let n = 0;
    for (const { actor, state } of this.#store.ofPartitions(partitions)) {
      const type = this.#types.get(actor.slice(0, actor.indexOf('/')));
      const view = type?.durable ? type.def.view : undefined;
      const change = add ? view?.restore : view?.evict;
      if (change === undefined) continue;
      change(type!.view, actor.slice(type!.name.length + 1), state);
      n++;
    }
    return n;
  }

  /** Drops an activation: its timers stop, its waiting messages go back to the main thread to be routed. */
  #retire(act: Activation): void {
    this.#clearTimers(act);
    this.#acts.delete(act.id);
    const mb = act.mailbox;
    act.mailbox = null;
    if (mb === null) return;
    for (let i = act.head; i < mb.length; i += MAIL_STRIDE) if (mb[i] !== ACTIVATE) this.#outM[0]!.push(act.id, act.partition, mb[i], mb[i + 1], mb[i + 2], mb[i + 3]);
  }

  /** Finishes every turn in flight, commits, and sends what is left. */
  async drain(deadlineMs = 30_000): Promise<void> {
    this.#stopping = true;
    const until = performance.now() + deadlineMs;
    for (;;) {
      this.#cycle();
      if (this.#busy === 0 && this.#ready.length === this.#readyHead) break;
      if (performance.now() > until) {
        this.log.warn({ busy: this.#busy }, 'turns still in flight at the shutdown deadline; stopping without them');
        break;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await this.#changelogSettled(until);
    if (this.#fencedMail.size > 0) this.#settleFenced(new Set(this.#fencedMail.keys()));
    clearInterval(this.#fenceTimer);
    this.#flush();
    clearTimeout(this.#logRetry);
    clearInterval(this.#sweeper);
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#pending.failAll((t, h) => new NotRunning(`shard ${this.index} (ask ${t}.${h})`));
  }
}
