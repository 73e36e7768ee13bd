// A Troupe node: W shard workers, the router between them, and the ActorSystem face gateways use.

import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { makePrivateDir } from './private-files.js';
import { availableParallelism, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { AnyActorDefinition } from './actor.js';
import { ActorRef } from './actor-ref.js';
import { OWNED_ELSEWHERE, OWNED_HERE } from './envelope.js';
import { joinCluster, type ClusterMember } from './cluster/cluster-member.js';
import { ClusterTls, nodeNameOf, type ClusterTlsFiles } from './cluster/cluster-tls.js';
import { ConfigError, NotRunning, UnknownActorType } from './errors.js';
import type { GrpcServerLimits } from './grpc-limits.js';
import { inspectorService, startInspectorServer, type InspectedNode, type InspectorMode } from './inspector/service.js';
import { rootLogger, type Logger } from './log.js';
import type { RedisTarget } from './redis-connection.js';
import { LocalMembership, type Membership } from './membership.js';
import { DEFAULT_PARTITIONS, partitionOf } from './partition.js';
import { Router } from './router.js';
import type { ShardControl, ShardInit } from './shard-worker.js';
import { reshard } from './snapshot-store.js';
import { clusterNotReady, type ActorSystem, type NodeStats } from './system.js';
import { startTracing, stopTracing, type TracingOptions } from './tracing-sdk.js';
import { mergeTallies, type TypeTallySnapshot } from './turn-tally.js';

export interface NodeOptions {
  /** Unique across nodes, clusters and restarts; default `<hostname>-<time>-<random>`. */
  nodeId?: string;
  /** Where the shards keep their SQLite snapshots; created when missing. */
  dataDir: string;
  /** Worker threads; default: the number of cores. */
  shards?: number;
  /** Fixed for the life of a cluster; default 1024. */
  partitions?: number;
  /** Module URLs of actor types; each module does `export default defineActor(...)`. */
  actorModules: readonly string[];
  /** Handed to every shard as ShardEnvironment.settings (plain values only). */
  settings?: Record<string, unknown>;
  /** Default ask timeout; default 5000 ms. */
  askTimeoutMs?: number;
  /** Messages in flight to one shard before tell/ask get Overloaded; default 262144. */
  shardQueueCapacity?: number;
  /** SQLite synchronous mode: `normal` survives a process crash, `full` also a power cut. */
  durability?: 'normal' | 'full';
  /** Join a cluster through Redis; without it the node runs alone and serves every partition. */
  cluster?: ClusterOptions;
  /** Serve the Inspector gRPC service (`troupe inspect`); without it, none. */
  inspector?: InspectorOptions;
  /** The connection limits of the node's own gRPC servers, cluster port and inspector (the --grpc-* settings; runtime/grpc-limits.ts has the defaults). */
  grpcLimits?: Partial<GrpcServerLimits>;
  /**
   * Mutual TLS on the cluster port and the inspector's listener: PEM files, checked at start
   * (ConfigError) and read again every `refreshMs` (default 5000) for a rotation. In a cluster the
   * certificate must name the node's name (the node id without its last two `-` parts).
   */
  tls?: ClusterTlsFiles & { refreshMs?: number };
  /**
   * Record OpenTelemetry spans and send them over OTLP/HTTP, in every shard and (unless it already
   * records, e.g. a test's own provider) in this thread; without it, no tracing.
   */
  tracing?: TracingOptions;
  log?: Logger;
}

export interface InspectorOptions {
  /** `read-only` refuses to send asks and tells. */
  mode: InspectorMode;
  /**
   * Alone, where the inspector listens (port 0: any free port); in a cluster it is served on the
   * cluster port beside the node-to-node transport, and these are ignored unless `ownListener`.
   */
  host: string;
  port: number;
  /** Serve on host:port even in a cluster, not on the cluster port (--inspector-port: loopback). */
  ownListener?: boolean;
  /** The gateways' and ops ports to report, asked at each call (they bind after the node starts). */
  ports?: () => Record<string, number>;
}

export interface ClusterOptions {
  /** Redis holding membership, the ring, the leases and the changelogs: a URL, or Sentinels and a master name. */
  redis: RedisTarget;
  /** Cluster name: the prefix of every key; several clusters may share one Redis. */
  name: string;
  /** Where the node-to-node gRPC listens. */
  host: string;
  port: number;
  /** host:port other nodes dial (default: host:port, with 127.0.0.1 for a wildcard host). */
  advertise?: string;
  /** [frames] The largest frame taken on the cluster port (runtime/cluster/frame-limit.ts; default 16 MiB). */
  maxFrameBytes?: number;
}

export interface TroupeNode extends ActorSystem {
  readonly membership: Membership;
  readonly dataDir: string;
  readonly shardCount: number;
  /** The port of the node's gRPC server (node-to-node and the inspector); undefined when it runs neither. */
  readonly clusterPort: number | undefined;
  /** Where the inspector listens: the cluster port, its own listener's, or undefined when off. */
  readonly inspectorPort: number | undefined;
  /** Resolves if a shard dies: the node can no longer serve its partitions. */
  readonly failed: Promise<Error>;
  /** True while this node serves the partition (always, alone; in a cluster, while it holds the lease). */
  servesPartition(partition: number): boolean;
  /** Why this node is not ready to serve (for /readyz); undefined when it is. Alone, always ready. */
  notReady(): string | undefined;
  /** What the inspector and the dashboard read of this node (its cluster member, its types, states). */
  readonly inspected: InspectedNode;
  /** Per actor type counters summed over this node's shards (turns counted where they ran). */
  typeTallies(): Promise<TypeTallySnapshot[]>;
  /** Turn timing in every shard (one turn in eight timed while on): on while a dashboard watches. */
  setTurnTiming(on: boolean): Promise<void>;
  /** Graceful: refuse new messages, finish turns in flight, commit, stop the shards. */
  stop(): Promise<void>;
}

interface DataDirMeta {
  partitions: number;
  shards: number;
}

/** Checks the data directory against the options: P never changes; W may, and rows then move. */
function prepareDataDir(dataDir: string, partitions: number, shards: number, log: Logger): void {
  makePrivateDir(dataDir);
  const metaPath = join(dataDir, 'troupe.json');
  if (existsSync(metaPath)) {
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as DataDirMeta;
    if (meta.partitions !== partitions) {
      throw new ConfigError(
        `data directory ${dataDir} was written with ${meta.partitions} partitions, and this node is set to ${partitions}; ` +
          `the partition count is fixed for the life of the data: set it back to ${meta.partitions} or use a new --data-dir`,
      );
    }
    if (meta.shards !== shards) {
      const moved = reshard(dataDir, meta.shards, shards);
      log.info({ from: meta.shards, to: shards, moved }, 'shard count changed; moved snapshots to their new shards');
    }
  }
  writeFileSync(metaPath, JSON.stringify({ partitions, shards } satisfies DataDirMeta), { mode: 0o600 });
}

async function loadDefinitions(urls: readonly string[]): Promise<Map<string, AnyActorDefinition>> {
  const defs = new Map<string, AnyActorDefinition>();
  for (const url of urls) {
    let mod: { default?: AnyActorDefinition };
    try {
      mod = (await import(url)) as { default?: AnyActorDefinition };
    } catch (err) {
      throw new ConfigError(`actor module ${url} cannot be loaded: ${(err as Error).message}`);
    }
    const def = mod.default;
    if (!def || typeof def.type !== 'string' || typeof def.handlers !== 'object') {
      throw new ConfigError(`actor module ${url} must \`export default defineActor({...})\``);
    }
    const other = defs.get(def.type);
    if (other && other !== def) throw new ConfigError(`two actor modules define the type "${def.type}" (${url})`);
    defs.set(def.type, def);
  }
  return defs;
}

/** `<name>-<time36>-<hex6>`: unique across restarts; the name (default the host name) is what a node's certificate names. */
export function newNodeId(name: string = hostname()): string {
  return `${name.replace(/[^A-Za-z0-9-]/g, '-')}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export async function startNode(options: NodeOptions): Promise<TroupeNode> {
  const startedAt = Date.now();
  const log = options.log ?? rootLogger();
  const nodeId = options.nodeId ?? newNodeId();
  const shardCount = options.shards ?? availableParallelism();
  const partitions = options.partitions ?? DEFAULT_PARTITIONS;
  const askTimeoutMs = options.askTimeoutMs ?? 5000;
  const queueCapacity = options.shardQueueCapacity ?? 262_144;
  if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > 256) throw new ConfigError(`shards must be 1 to 256, got ${shardCount}`);
  if (!Number.isInteger(partitions) || partitions < shardCount || partitions > 1 << 20) {
    throw new ConfigError(`partitions must be a whole number from the shard count (${shardCount}) to 1048576, got ${partitions}`);
  }
  const dataDir = resolve(options.dataDir);
  const tls = options.tls ? ClusterTls.load({ ...options.tls, expectName: options.cluster ? nodeNameOf(nodeId) : undefined, log }) : undefined;
  prepareDataDir(dataDir, partitions, shardCount, log);
  const defs = await loadDefinitions(options.actorModules);
  const tracing = options.tracing ? { ...options.tracing, attributes: { 'service.instance.id': nodeId, 'troupe.node': nodeId, ...options.tracing.attributes } } : undefined;

  const queuedBuffer = new SharedArrayBuffer(4 * shardCount);
  const ownershipBuffer = new SharedArrayBuffer(4 * partitions);
  // Alone, a node serves everything; in a cluster, only what it holds leases for.
  new Int32Array(ownershipBuffer).fill(options.cluster ? OWNED_ELSEWHERE : OWNED_HERE);
  const deadlinesBuffer = options.cluster ? new SharedArrayBuffer(8 * partitions) : undefined;
  const tenuresBuffer = options.cluster ? new SharedArrayBuffer(4 * partitions) : undefined;

  // A full mesh of ports between shards, so actor-to-actor messages never cross the main thread.
  const peers: (MessagePort | undefined)[][] = Array.from({ length: shardCount }, () => new Array(shardCount).fill(undefined));
  for (let a = 0; a < shardCount; a++) {
    for (let b = a + 1; b < shardCount; b++) {
      const { port1, port2 } = new MessageChannel();
      peers[a]![b] = port1;
      peers[b]![a] = port2;
    }
  }

  const workers: Worker[] = [];
  const dataPorts: MessagePort[] = [];
  const controls: Comlink.Remote<ShardControl>[] = [];
  let failShard!: (err: Error) => void;
  const failed = new Promise<Error>((r) => (failShard = r));
  let stopping = false;

  const workerUrl = new URL('./shard-worker.js', import.meta.url);
  const started: Promise<void>[] = [];
  for (let s = 0; s < shardCount; s++) {
    const data = new MessageChannel();
    const control = new MessageChannel();
    const ownPeers = peers[s]!;
    const init: ShardInit = {
      index: s,
      count: shardCount,
      partitions,
      nodeId,
      dataDir,
      actorModules: [...options.actorModules],
      settings: options.settings ?? {},
      queued: queuedBuffer,
      ownership: ownershipBuffer,
      leaseDeadlines: deadlinesBuffer,
      tenures: tenuresBuffer,
      changelog: options.cluster ? { redis: options.cluster.redis, cluster: options.cluster.name } : undefined,
      tracing,
      queueCapacity,
      askTimeoutMs,
      durability: options.durability ?? 'normal',
      dataPort: data.port2,
      controlPort: control.port2,
      peers: ownPeers,
    };
    const transfer = [data.port2, control.port2, ...ownPeers.filter((p): p is MessagePort => p !== undefined)];
    const worker = new Worker(workerUrl, { workerData: init, transferList: transfer, name: `troupe-shard-${s}` });
    workers.push(worker);
    dataPorts.push(data.port1);
    controls.push(Comlink.wrap<ShardControl>(nodeEndpoint(control.port1)));
    started.push(
      new Promise<void>((resolveStart, rejectStart) => {
        worker.once('message', (msg: { ready?: true; failed?: string }) => {
          if (msg.ready) resolveStart();
          else rejectStart(new Error(`shard ${s} failed to start: ${msg.failed}`));
        });
        worker.once('error', (err) => rejectStart(err));
      }),
    );
    worker.on('error', (err) => {
      log.error({ err, shard: s }, 'shard crashed');
      failShard(new Error(`shard ${s} crashed: ${err.message}`));
    });
    worker.on('exit', (code) => {
      if (!stopping) failShard(new Error(`shard ${s} exited with code ${code}`));
    });
  }
  try {
    await Promise.all(started);
  } catch (err) {
    stopping = true;
    await Promise.all(workers.map((w) => w.terminate()));
    throw err;
  }
  // This thread records too (gateway spans, asks from it), unless it already does.
  const tracesHere = tracing !== undefined && startTracing({ ...tracing, attributes: { ...tracing.attributes, 'troupe.thread': 'main' } });

  const ownershipTable = new Int32Array(ownershipBuffer);
  // Built before the cluster is joined (the cluster's server carries it); answers once `node` is set.
  let node: TroupeNode | undefined;
  let cluster: ClusterMember | undefined;
  let inspectorAddress = '';
  const inspected: InspectedNode = {
    nodeId,
    partitions,
    shardCount,
    dataDir,
    startedAt,
    defaultAskTimeoutMs: askTimeoutMs,
    actorTypes: [...defs.values()].map((d) => ({ name: d.type, storage: d.storage, handlers: Object.keys(d.handlers), hasView: d.view !== undefined })),
    system: () => {
      if (!node || stopping) throw new NotRunning(`node ${nodeId} (starting or stopping)`);
      return node;
    },
    cluster: () => cluster,
    address: () => (cluster ? (cluster.membership.info(nodeId)?.address ?? inspectorAddress) : inspectorAddress),
    ports: () => options.inspector?.ports?.() ?? {},
    inspectState: (id, maxBytes) => controls[partitionOf(id, partitions) % shardCount]!.inspectState(id, maxBytes),
  };
  const inspector = options.inspector ? inspectorService(inspected, options.inspector.mode, log) : undefined;
  const router = new Router({
    shards: dataPorts,
    queued: new Int32Array(queuedBuffer),
    queueCapacity,
    askTimeoutMs,
    ownership: ownershipTable,
  });
  let standaloneInspector: Awaited<ReturnType<typeof startInspectorServer>> | undefined;
  // Its own listener first: a port taken fails the start before this node joins the cluster.
  if (inspector && (!options.cluster || options.inspector!.ownListener)) {
    try {
      standaloneInspector = await startInspectorServer(options.inspector!.host, options.inspector!.port, inspector, options.grpcLimits ?? {}, tls);
    } catch (err) {
      stopping = true;
      await Promise.all(workers.map((w) => w.terminate()));
      throw new ConfigError((err as Error).message);
    }
  }
  if (options.cluster) {
    try {
      cluster = await joinCluster({
        ...options.cluster,
        services: inspector && !options.inspector!.ownListener ? [inspector] : [],
        tls,
        limits: options.grpcLimits,
        self: nodeId,
        partitions,
        router,
        ownership: new Int32Array(ownershipBuffer),
        deadlines: new Float64Array(deadlinesBuffer!),
        tenures: new Int32Array(tenuresBuffer!),
        shards: controls,
        dataDir,
        log,
      });
    } catch (err) {
      stopping = true;
      await standaloneInspector?.close();
      await Promise.all(workers.map((w) => w.terminate()));
      throw err;
    }
  }
  const clusterPort = cluster?.transport.port ?? standaloneInspector?.port;
  const inspectorPort = inspector ? (standaloneInspector?.port ?? clusterPort) : undefined;
  if (clusterPort !== undefined) {
    const host = options.cluster?.host ?? options.inspector!.host;
    inspectorAddress = `${host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host}:${clusterPort}`;
  }
  const membership: Membership = cluster?.membership ?? new LocalMembership(nodeId);

  const typeName = (type: AnyActorDefinition | string): string => {
    const name = typeof type === 'string' ? type : type.type;
    if (!defs.has(name)) throw new UnknownActorType(name, [...defs.keys()]);
    return name;
  };

  node = {
    nodeId,
    partitions,
    log,
    membership,
    dataDir,
    shardCount,
    clusterPort,
    inspectorPort,
    failed,
    inspected,
    async typeTallies(): Promise<TypeTallySnapshot[]> {
      return mergeTallies(await Promise.all(controls.map((c) => c.typeTallies())));
    },
    async setTurnTiming(on: boolean): Promise<void> {
      await Promise.all(controls.map((c) => c.setTurnTiming(on)));
    },
    ref<D extends AnyActorDefinition>(type: D | string, key: string): ActorRef<D> {
      const id = typeName(type) + '/' + key;
      return new ActorRef<D>(id, partitionOf(id, partitions), router);
    },
    refFromId(ref: string | { id: string }): ActorRef {
      const id = typeof ref === 'string' ? ref : ref.id;
      const slash = id.indexOf('/');
      if (slash <= 0) throw new TypeError(`"${id}" is not an actor id: expected "type/key"`);
      typeName(id.slice(0, slash));
      return new ActorRef(id, partitionOf(id, partitions), router);
    },
    async query<A>(type: AnyActorDefinition | string, args?: unknown): Promise<A> {
      const name = typeName(type);
      const def = defs.get(name)!;
      if (!def.view) throw new TypeError(`actor type "${name}" has no view to query`);
      const merge = def.view.merge ?? ((a: any, b: any) => a + b);
      const local = ((await Promise.all(controls.map((c) => c.query(name, args)))) as A[]).reduce((a, b) => merge(a, b) as A);
      if (!cluster) return local;
      const remote = (await cluster.queryPeers(name, args)) as A[];
      return remote.reduce((a, b) => merge(a, b) as A, local);
    },
    async stats(): Promise<NodeStats> {
      return { nodeId, shards: await Promise.all(controls.map((c) => c.stats())), pendingAsks: router.pending.size, cluster: cluster?.health() };
    },
    async listActors(o?: { type?: string; limit?: number }): Promise<string[]> {
      const limit = o?.limit ?? 100;
      const lists = await Promise.all(controls.map((c) => c.listActors(o?.type, limit)));
      return lists.flat().slice(0, limit);
    },
    async readState(id: string): Promise<unknown> {
      return controls[partitionOf(id, partitions) % shardCount]!.readState(id);
    },
    servesPartition(partition: number): boolean {
      return Atomics.load(ownershipTable, partition) === OWNED_HERE;
    },
    notReady(): string | undefined {
      return cluster ? clusterNotReady(cluster.health()) : undefined;
    },
    async collectGarbage(): Promise<boolean> {
      const done = await Promise.all(controls.map((c) => c.collectGarbage()));
      return done.every(Boolean);
    },
    async stop(): Promise<void> {
      if (stopping) return;
      stopping = true;
      await standaloneInspector?.close();
      // In a cluster, hand this node's partitions to the others first: nothing accepted is lost.
      if (cluster) await cluster.leave();
      router.close();
      await Promise.all(
        dataPorts.map(
          (port) =>
            new Promise<void>((done) => {
              port.on('message', (frame: { stopped?: true }) => {
                if (frame.stopped) done();
              });
              port.postMessage({ stop: true });
            }),
        ),
      );
      router.pending.failAll((t, h) => new NotRunning(`this node (ask ${t}.${h})`));
      for (const c of controls) c[Comlink.releaseProxy]();
      for (const port of dataPorts) port.close();
      await Promise.all(workers.map((w) => w.terminate()));
      await cluster?.close();
      if (tracesHere) await stopTracing().catch((err: unknown) => log.warn({ err }, 'sending the last spans failed'));
      log.debug({ nodeId }, 'node stopped');
    },
  };
  return node;
}
