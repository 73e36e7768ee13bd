// The small typed hierarchy of errors the runtime raises: what happened, to what, and what to do.

/** Base of every error Troupe raises on purpose. `code` is stable and safe to switch on. */
export class TroupeError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A mailbox or queue is full. Retry later, or slow down; nothing was enqueued. */
export class Overloaded extends TroupeError {
  constructor(what: string) {
    super('OVERLOADED', `${what} is full; the message was not accepted, retry later or slow down`);
  }
}

/** An ask got no reply in time. The message may or may not have been handled. */
export class AskTimeout extends TroupeError {
  constructor(target: string, handler: string, timeoutMs: number) {
    super('ASK_TIMEOUT', `ask ${target}.${handler} got no reply within ${timeoutMs} ms; it may still have been handled`);
  }
}

/** No actor type of that name is registered on this node. */
export class UnknownActorType extends TroupeError {
  constructor(type: string, known: readonly string[]) {
    super('UNKNOWN_ACTOR_TYPE', `no actor type "${type}" is registered (known: ${known.join(', ') || 'none'})`);
  }
}

/** The actor type has no handler of that name. */
export class UnknownHandler extends TroupeError {
  constructor(type: string, handler: string, known: readonly string[]) {
    super('UNKNOWN_HANDLER', `actor type "${type}" has no handler "${handler}" (handlers: ${known.join(', ')})`);
  }
}

/** The node is shutting down or not started; the message was not accepted. */
export class NotRunning extends TroupeError {
  constructor(what: string) {
    super('NOT_RUNNING', `${what} is not running; the message was not accepted`);
  }
}

/**
 * The node an ask was forwarded to left the cluster (died, or left) before it answered. The message
 * may or may not have been handled there; the actor answers again from its new owner.
 */
export class PeerGone extends TroupeError {
  constructor(peer: string) {
    super('PEER_GONE', `node ${peer} left the cluster before answering; the message may or may not have been handled`);
  }
}

/**
 * The node that owns the actor's partition cannot be reached from here now (a network partition);
 * an ask forwarded to it may or may not have been handled. Retry: the cluster moves its partitions
 * to nodes that can be reached.
 */
export class PeerUnreachable extends TroupeError {
  constructor(peer: string) {
    super('PEER_UNREACHABLE', `node ${peer} cannot be reached from this node now; the message may or may not have been handled there: retry`);
  }
}

/**
 * In a cluster: a turn's change was committed on its node but not written to the partition's
 * changelog in Redis, so it would not survive that node's crash. It was not acknowledged; it may
 * or may not be there later (the shard keeps trying to write it).
 */
export class ChangelogUnavailable extends TroupeError {
  constructor(actor: string, reason: string) {
    super('CHANGELOG_UNAVAILABLE', `the change to ${actor} could not be written to its partition's changelog in Redis (${reason}); it was not acknowledged and may or may not be applied: read it back, then retry`);
  }
}

/** In a cluster: the partition moved to another node before a turn's change was logged (or before the turn could run or end); the change is gone. */
export class PartitionMoved extends TroupeError {
  constructor(actor: string, partition: number, why = 'moved to another node before the change was logged') {
    super('PARTITION_MOVED', `partition ${partition} of ${actor} ${why}; it was not applied there: retry`);
  }
}

/**
 * In a cluster: nobody serves the partition now (its owner cannot reach Redis to hold its lease, or
 * Redis lost the cluster's data). The message was not handled: retry later.
 */
export class PartitionUnavailable extends TroupeError {
  constructor(actor: string, partition: number, node: string, why: string) {
    super('PARTITION_UNAVAILABLE', `partition ${partition} of ${actor} is served by no node now (its owner ${node}: ${why}); the message was not handled: retry later`);
  }
}

/** A setting was given a value it cannot take. */
export class ConfigError extends TroupeError {
  constructor(message: string) {
    super('CONFIG', message);
  }
}

/**
 * A handler threw. Raised on the asking side with the original name, message and code, since the
 * original error object cannot cross a thread or a node.
 */
export class ActorFailure extends TroupeError {
  readonly actor: string;
  readonly handler: string;
  readonly causeName: string;
  constructor(actor: string, handler: string, causeName: string, message: string, code?: string) {
    super(code ?? 'ACTOR_FAILURE', message);
    this.actor = actor;
    this.handler = handler;
    this.causeName = causeName;
  }
}

/**
 * Codes of runtime errors after which the same message may succeed a moment later on the same
 * address: the actor's partition is moving or unserved, its node left or is out of reach, the
 * reply or the changelog write did not come in time, a buffer was full. A gateway answers these as
 * "unavailable, retry" (503, UNAVAILABLE), never as an internal error.
 */
export const RETRYABLE_CODES: ReadonlySet<string> = new Set(['OVERLOADED', 'ASK_TIMEOUT', 'NOT_RUNNING', 'PEER_GONE', 'PEER_UNREACHABLE', 'CHANGELOG_UNAVAILABLE', 'PARTITION_MOVED', 'PARTITION_UNAVAILABLE']);

/** The plain shape an error takes on the wire (between threads and nodes). */
export interface WireError {
  name: string;
  message: string;
  code?: string;
}

export function toWireError(err: unknown): WireError {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, message: err.message, code: typeof code === 'string' ? code : undefined };
  }
  return { name: 'Error', message: String(err) };
}

/** Rebuilds the typed error on the asking side, so `instanceof Overloaded` works across threads. */
export function fromWireError(w: WireError, actor: string, handler: string): Error {
  switch (w.code) {
    case 'OVERLOADED': {
      const e = new Overloaded('x');
      e.message = w.message;
      return e;
    }
    case 'UNKNOWN_ACTOR_TYPE':
    case 'UNKNOWN_HANDLER':
    case 'NOT_RUNNING':
    case 'PEER_GONE':
    case 'PEER_UNREACHABLE':
    case 'CHANGELOG_UNAVAILABLE':
    case 'PARTITION_MOVED':
    case 'PARTITION_UNAVAILABLE':
    case 'ASK_TIMEOUT': {
      const e = new TroupeError(w.code, w.message);
      e.name = w.name;
      return e;
    }
    default: {
      const e = new ActorFailure(actor, handler, w.name, w.message, w.code);
      return e;
    }
  }
}
