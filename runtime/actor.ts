// How an actor type is defined: a plain module with a name, initial state, handlers, storage and
// idle timeout. This file is the heart of the public API; the shard (shard.ts) runs what it declares.

import type { ActorRef } from './actor-ref.js';
import type { Logger } from './log.js';

/** `volatile` actors live in memory only; `durable` ones commit every state change to SQLite. */
export type Storage = 'volatile' | 'durable';

export interface AskOptions {
  /** Reject with AskTimeout after this many milliseconds (default: the node's ask timeout). */
  timeoutMs?: number;
}

export type TimerId = number;

/**
 * What a handler sees during its turn. `state` is the actor's state: read it freely, and to change
 * it assign a new value (`ctx.state = { ...ctx.state, n: 1 }`). The assignment is staged and takes
 * effect only when the turn ends without throwing; a turn that throws leaves the state as it was.
 * Treat the state object as immutable: mutating it in place cannot be rolled back.
 */
export interface ActorContext<S, V = any, R = any> {
  /** This actor's own reference. */
  readonly self: ActorRef<any>;
  /** The key part of `type/key`. */
  readonly key: string;
  /** The state as of this turn (including changes staged earlier in the same turn). */
  state: S;
  /** A reference to any actor, by definition (or type name) and key. */
  ref<D extends AnyActorDefinition>(type: D | string, key: string): ActorRef<D>;
  /** Fire-and-forget. Never blocks, allocates no promise; throws Overloaded if the path is full. */
  tell(target: ActorRef<any> | string, handler: string, message?: unknown): void;
  /** Request-reply. Rejects with AskTimeout, Overloaded, or the target handler's error. */
  ask<R = unknown>(target: ActorRef<any> | string, handler: string, message?: unknown, options?: AskOptions): Promise<R>;
  /**
   * Deliver `handler(message)` to this actor after `delayMs` (every `delayMs` with repeat). Timers
   * are volatile: they keep the actor active, and die with the activation.
   */
  setTimer(delayMs: number, handler: string, message?: unknown, options?: { repeat?: boolean }): TimerId;
  cancelTimer(id: TimerId): void;
  /** Milliseconds since the epoch (the shard's clock; tests may replace it). */
  now(): number;
  readonly log: Logger;
  /** This shard's view of the actor type (see ActorSpec.view), shared by its actors on this shard. */
  readonly view: V;
  /** What the type's `resources` set up once per shard (a database pool, say). */
  readonly resources: R;
}

/**
 * A per-shard aggregate over all actors of one type, kept up to date by their handlers through
 * `ctx.view`, and queried from outside with `system.query(type, args)`: the shard answers, answers
 * are merged over shards (and nodes). It answers questions like "how many users were seen in the
 * last 3 minutes" without scanning actors.
 */
export interface ViewSpec<S, V, Q = any, A = any> {
  create(): V;
  /** Durable types: called at shard start for every stored snapshot, to rebuild the view. */
  restore?(view: V, key: string, state: S): void;
  /** Cluster hand-off: the actor's partition leaves this shard; remove what it contributed. */
  evict?(view: V, key: string, state: S): void;
  query(view: V, args: Q): A;
  /** Combines two answers (default: numeric sum). */
  merge?(a: A, b: A): A;
}

/** What a shard offers to an actor type's `resources` function. */
export interface ShardEnvironment {
  readonly shardIndex: number;
  readonly shardCount: number;
  readonly dataDir: string;
  /** The node's validated settings (plain values). */
  readonly settings: Readonly<Record<string, unknown>>;
  readonly log: Logger;
}

export interface ResourceSpec<R> {
  open(env: ShardEnvironment): R | Promise<R>;
  close?(resources: R): void | Promise<void>;
}

/** A message handler: receives the context and the message; what it returns is the ask's reply. */
export type Handler<S, M = any, R = any> = (ctx: ActorContext<S>, message: M) => R | Promise<R>;

/** Runs before the first message of an activation (after the state is loaded); may be async. */
export type ActivateHook<S> = (ctx: ActorContext<S>) => void | Promise<void>;

export type Handlers<S> = Record<string, Handler<S, any, any>>;

export interface ActorDefinition<S = any, H extends Handlers<S> = Handlers<S>> {
  /** The type name, the first part of `type/key`. Letters, digits and `-`, `_`, `.`. */
  readonly type: string;
  readonly storage: Storage;
  /** Passivate after this long without a message (no timers pending). */
  readonly idleTimeoutMs: number;
  /** Most messages one actor may have waiting; beyond it senders get Overloaded. */
  readonly mailboxCapacity: number;
  /** How durable states are stored: `v8` (structured clone: Map, Date, …) or `json` (faster, plain data). */
  readonly snapshotCodec: 'v8' | 'json';
  readonly initialState: (key: string) => S;
  readonly handlers: H;
  readonly activate?: ActivateHook<S>;
  readonly view?: ViewSpec<S, any>;
  readonly resources?: ResourceSpec<any>;
}

export type AnyActorDefinition = ActorDefinition<any, any>;

export interface ActorSpec<S, H extends Handlers<S>> {
  type: string;
  storage?: Storage;
  idleTimeoutMs?: number;
  mailboxCapacity?: number;
  snapshotCodec?: 'v8' | 'json';
  initialState: (key: string) => S;
  handlers: H;
  activate?: ActivateHook<S>;
  view?: ViewSpec<S, any>;
  resources?: ResourceSpec<any>;
}

const TYPE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_MAILBOX_CAPACITY = 10_000;

/**
 * Declares an actor type. The module that calls it must `export default` the result, because
 * shards (worker threads) load actor types by module URL.
 *
 *   export default defineActor({
 *     type: 'counter', storage: 'durable',
 *     initialState: () => ({ n: 0 }),
 *     handlers: {
 *       add(ctx, by: number) { ctx.state = { n: ctx.state.n + by }; return ctx.state.n; },
 *       get(ctx) { return ctx.state.n; },
 *     },
 *   });
 */
export function defineActor<S, H extends Handlers<S>>(spec: ActorSpec<S, H>): ActorDefinition<S, H> {
  if (!TYPE_NAME.test(spec.type)) {
    throw new TypeError(`actor type name "${spec.type}" is invalid: use 1-64 letters, digits, "-", "_" or ".", starting with a letter`);
  }
  const storage = spec.storage ?? 'volatile';
  if (storage !== 'volatile' && storage !== 'durable') {
    throw new TypeError(`actor type "${spec.type}": storage must be "volatile" or "durable", got "${String(storage)}"`);
  }
  const idleTimeoutMs = spec.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  if (!(idleTimeoutMs > 0) || !Number.isFinite(idleTimeoutMs)) {
    throw new TypeError(`actor type "${spec.type}": idleTimeoutMs must be a positive number of milliseconds`);
  }
  const mailboxCapacity = spec.mailboxCapacity ?? DEFAULT_MAILBOX_CAPACITY;
  if (!Number.isInteger(mailboxCapacity) || mailboxCapacity < 1) {
    throw new TypeError(`actor type "${spec.type}": mailboxCapacity must be a positive integer`);
  }
  for (const [name, fn] of Object.entries(spec.handlers)) {
    if (typeof fn !== 'function') throw new TypeError(`actor type "${spec.type}": handler "${name}" is not a function`);
  }
  const snapshotCodec = spec.snapshotCodec ?? 'v8';
  if (snapshotCodec !== 'v8' && snapshotCodec !== 'json') {
    throw new TypeError(`actor type "${spec.type}": snapshotCodec must be "v8" or "json", got "${String(snapshotCodec)}"`);
  }
  return Object.freeze({
    type: spec.type,
    storage,
    idleTimeoutMs,
    mailboxCapacity,
    snapshotCodec,
    initialState: spec.initialState,
    handlers: spec.handlers,
    activate: spec.activate,
    view: spec.view,
    resources: spec.resources,
  });
}

/** The message type a handler takes. */
export type MessageOf<D, K> = D extends ActorDefinition<any, infer H>
  ? K extends keyof H
    ? Parameters<H[K]>[1]
    : never
  : unknown;

/** The reply type a handler gives. */
export type ReplyOf<D, K> = D extends ActorDefinition<any, infer H>
  ? K extends keyof H
    ? Awaited<ReturnType<H[K]>>
    : never
  : unknown;

export type HandlerName<D> = D extends ActorDefinition<any, infer H> ? keyof H & string : string;
