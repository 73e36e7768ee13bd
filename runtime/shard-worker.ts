// The entry of a shard's worker thread: loads the actor types, opens the shard's snapshot
// database (and in a cluster its client of the partition changelogs), rebuilds views, then serves
// batches on the data port and control calls (comlink).

import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { AnyActorDefinition, ShardEnvironment } from './actor.js';
import { PartitionChangelog } from './cluster/partition-changelog.js';
import type { Batch } from './envelope.js';
import { rootLogger } from './log.js';
import type { RedisTarget } from './redis-connection.js';
import { Shard, shardActorType, type InspectedState, type ShardActorType } from './shard.js';
import { shardDatabasePath, SnapshotStore } from './snapshot-store.js';
import { startTracing, stopTracing, type TracingOptions } from './tracing-sdk.js';
import type { TypeTallySnapshot } from './turn-tally.js';

export interface ShardInit {
  index: number;
  count: number;
  partitions: number;
  nodeId: string;
  dataDir: string;
  actorModules: string[];
  settings: Record<string, unknown>;
  queued: SharedArrayBuffer;
  ownership: SharedArrayBuffer;
  /** Cluster only: per-partition lease deadlines (Float64, epoch ms). */
  leaseDeadlines?: SharedArrayBuffer;
  /** Cluster only: per-partition tenures (Int32; see ShardOptions.tenures). */
  tenures?: SharedArrayBuffer;
  /** Cluster only: where the partition changelogs are (see ShardOptions.changelog). */
  changelog?: { redis: RedisTarget; cluster: string };
  /** Record spans of traced turns in this shard (tracing.ts); the resource names node and shard. */
  tracing?: TracingOptions;
  queueCapacity: number;
  askTimeoutMs: number;
  durability: 'normal' | 'full';
  dataPort: MessagePort;
  controlPort: MessagePort;
  /** peers[k] talks to shard k (undefined at this shard's own index). */
  peers: (MessagePort | undefined)[];
}

/** What the main thread can call in a shard through comlink. */
export interface ShardControl {
  stats(): ReturnType<Shard['stats']>;
  listActors(type: string | undefined, limit: number): string[];
  readState(id: string): unknown;
  /** The inspector's bounded view of one actor (state rendered as JSON in the shard). */
  inspectState(id: string, maxBytes: number): InspectedState;
  query(type: string, args: unknown): unknown;
  /** Cluster hand-off: gives up partitions and returns their actors' rows (id, partition, state). */
  handOff(partitions: number[]): Promise<unknown[]>;
  /** Cluster hand-off: takes over actors shipped from another node. */
  install(rows: unknown[]): number;
  /** Cluster: forgets partitions lost without a hand-off (a lapsed or taken lease). */
  forget(partitions: number[]): number;
  /** Cluster: takes over partitions from their changelogs before they are served. */
  recover(partitions: number[], epoch?: number): Promise<number>;
  /** Per actor type counters and live activations (the dashboard). */
  typeTallies(): TypeTallySnapshot[];
  /** Times one turn in TIME_EVERY while on: the dashboard switches it on while someone watches. */
  setTurnTiming(on: boolean): void;
  /** Runs a full garbage collection when the process runs with --expose-gc (benchmarks). */
  collectGarbage(): boolean;
}

async function main(init: ShardInit): Promise<void> {
  const log = rootLogger().child({ node: init.nodeId, shard: init.index });
  if (init.tracing) startTracing({ ...init.tracing, attributes: { ...init.tracing.attributes, 'troupe.thread': `shard-${init.index}` } });
  const types = new Map<string, ShardActorType>();
  for (const url of init.actorModules) {
    const def = (await import(url)).default as AnyActorDefinition;
    types.set(def.type, shardActorType(def));
  }
  const env: ShardEnvironment = {
    shardIndex: init.index,
    shardCount: init.count,
    dataDir: init.dataDir,
    settings: init.settings,
    log,
  };
  for (const type of types.values()) {
    if (type.def.resources) type.resources = await type.def.resources.open(env);
  }
  const store = new SnapshotStore(shardDatabasePath(init.dataDir, init.index), init.durability);
  // Only durable actors are logged: a node without any keeps no Redis connection per shard for it.
  const logged = init.changelog !== undefined && [...types.values()].some((t) => t.durable);
  const changelog = logged ? await PartitionChangelog.open(init.changelog!.redis, init.changelog!.cluster, init.nodeId, log) : undefined;
  const ports = [init.dataPort, ...init.peers];
  const shard = new Shard({
    index: init.index,
    count: init.count,
    partitions: init.partitions,
    nodeId: init.nodeId,
    types,
    store,
    links: { post: (dest: number, batch: Batch) => ports[dest]!.postMessage(batch) },
    queued: new Int32Array(init.queued),
    queueCapacity: init.queueCapacity,
    ownership: new Int32Array(init.ownership),
    leaseDeadlines: init.leaseDeadlines ? new Float64Array(init.leaseDeadlines) : undefined,
    tenures: init.tenures ? new Int32Array(init.tenures) : undefined,
    changelog,
    askTimeoutMs: init.askTimeoutMs,
    log,
  });
  const restored = shard.restoreViews();
  if (restored > 0) log.debug({ restored }, 'views rebuilt from snapshots');

  const onBatch = (batch: Batch): void => shard.receive(batch);
  for (const peer of init.peers) peer?.on('message', onBatch);
  init.dataPort.on('message', (frame: Batch & { stop?: true }) => {
    if (frame.stop) {
      void stop();
      return;
    }
    shard.receive(frame);
  });

  async function stop(): Promise<void> {
    await shard.drain();
    for (const type of types.values()) {
      if (type.def.resources?.close && type.resources !== undefined) {
        try {
          await type.def.resources.close(type.resources);
        } catch (err) {
          log.warn({ err, type: type.name }, 'closing resources failed');
        }
      }
    }
    store.close();
    await changelog?.close();
    await stopTracing().catch((err: unknown) => log.warn({ err }, 'sending the last spans failed'));
    init.dataPort.postMessage({ stopped: true });
  }

  const control: ShardControl = {
    stats: () => shard.stats(),
    listActors: (type, limit) => shard.listActors(type, limit),
    readState: (id) => shard.readState(id),
    inspectState: (id, maxBytes) => shard.inspectState(id, maxBytes),
    query: (type, args) => shard.query(type, args),
    handOff: (partitions) => shard.handOff(partitions),
    install: (rows) => shard.install(rows),
    forget: (partitions) => shard.forget(partitions),
    recover: (partitions, epoch) => shard.recover(partitions, epoch),
    typeTallies: () => shard.typeTallies(),
    setTurnTiming: (on) => shard.setTurnTiming(on),
    collectGarbage: () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      return gc !== undefined;
    },
  };
  Comlink.expose(control, nodeEndpoint(init.controlPort));
  parentPort!.postMessage({ ready: true });
}

main(workerData as ShardInit).catch((err: unknown) => {
  parentPort!.postMessage({ failed: err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err) });
});
