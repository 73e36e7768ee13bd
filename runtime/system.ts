// The face of a running node that gateways and tools use: references to actors, cluster-wide view
// queries, and control calls (stats, actors, state) into the shards.

import type { ActorRef } from './actor-ref.js';
import type { AnyActorDefinition } from './actor.js';
import type { Logger } from './log.js';

export interface ShardStats {
  shard: number;
  activations: number;
  partitionsHeld: number;
  turns: number;
  turnsFailed: number;
  commits: number;
  committedStates: number;
  activationsTotal: number;
  passivationsTotal: number;
  rejectedOverloaded: number;
  /** Cluster: writes to the partition changelogs, the states they carried, and the writes that failed. */
  changelogWrites: number;
  changelogStates: number;
  changelogFailures: number;
  /** Cluster: states the changelog refused because the partition's lease had moved. */
  changelogRefused: number;
  /** Cluster: turns not run (their messages held or sent on), or run and not kept, because their partition's lease had lapsed here. */
  fencedTurns: number;
  queued: number;
  /** The shard thread's V8 heap in use, bytes. */
  heapUsed: number;
}

export interface NodeStats {
  nodeId: string;
  shards: ShardStats[];
  pendingAsks: number;
}

export interface ActorSystem {
  /** This node's id, unique across nodes, clusters and restarts. */
  readonly nodeId: string;
  readonly partitions: number;
  readonly log: Logger;
  /** A reference to `type/key`. Pass the definition for typed tell/ask. */
  ref<D extends AnyActorDefinition>(type: D | string, key: string): ActorRef<D>;
  /** A reference from an id `type/key` (or a reference that travelled as a plain value). */
  refFromId(id: string | { id: string }): ActorRef;
  /** Asks every shard (on every node) the type's view, merged (see ViewSpec). */
  query<A = unknown>(type: AnyActorDefinition | string, args?: unknown): Promise<A>;
  stats(): Promise<NodeStats>;
  /** Up to `limit` live activations, optionally of one type. */
  listActors(options?: { type?: string; limit?: number }): Promise<string[]>;
  /** The current state of an actor if it is active (undefined otherwise); for tools, not for logic. */
  readState(id: string): Promise<unknown>;
  /** Full garbage collection in every shard, when the process runs with --expose-gc. */
  collectGarbage(): Promise<boolean>;
}
