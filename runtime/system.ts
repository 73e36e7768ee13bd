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

/** In a cluster: what this node serves of what the ring gives it, and why not the rest. */
export interface ClusterHealth {
  /** Partitions the ring gives this node. */
  owned: number;
  /** Of those, served now (lease held by this node's clock). */
  serving: number;
  acquiring: number;
  releasing: number;
  /** The ring gives them to this node and it cannot take their leases (Redis unreachable, or it lost the cluster's data). */
  unavailable: number;
  why: string;
  epoch: number;
  /** Whether this node is on the ring it sees. */
  onRing: boolean;
  staleEpochRefusals: number;
  epochRaises: number;
  /** Ms since Redis last answered this node's ring or lease calls. */
  sinceRedisAnsweredMs: number;
  /** The lease TTL: past it without an answer from Redis, this node cannot tell what it may serve. */
  leaseTtlMs: number;
  /** Why the cluster is marked lost ('' when it is not): Redis lost its data and an operator must act. */
  clusterLost: string;
}

/** Why a node in a cluster is not ready, from its health; undefined when it is. */
export function clusterNotReady(h: ClusterHealth): string | undefined {
  if (h.clusterLost !== '') return `Redis lost the cluster's data (${h.clusterLost}); nothing is served until an operator runs troupe recover --accept`;
  if (h.sinceRedisAnsweredMs > h.leaseTtlMs) return `Redis has not answered for ${h.sinceRedisAnsweredMs} ms (lease TTL ${h.leaseTtlMs} ms): this node cannot tell which partitions it may serve`;
  if (!h.onRing) return 'this node is not on the ring yet (joining, or rejoining after it was declared dead)';
  if (h.owned > 0 && h.serving === 0) return `this node serves none of the ${h.owned} partitions the ring gives it${h.why ? `: ${h.why}` : ' (waiting for their leases)'}`;
  return undefined;
}

export interface NodeStats {
  nodeId: string;
  shards: ShardStats[];
  pendingAsks: number;
  /** In a cluster only. */
  cluster?: ClusterHealth;
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
