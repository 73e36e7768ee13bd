// A node's membership in a cluster: wires the Redis membership, ring, leases and ownership loop,
// the gRPC transport and the cross-node routing to the node's router and shards, and runs the
// hand-off on joins and graceful leaves.

import type { Remote } from 'comlink';
import { MAIN_ORIGIN } from '../envelope.js';
import type { Logger } from '../log.js';
import { connectRedis, type RedisTarget } from '../redis-connection.js';
import { ReplicaWait } from '../replica-wait.js';
import type { Router } from '../router.js';
import type { ShardControl } from '../shard-worker.js';
import { ClusterIncarnation } from './cluster-incarnation.js';
import { ClusterRouting } from './cluster-routing.js';
import { HANDOFF_ROW_STRIDE } from './frame-codec.js';
import { PartitionLeases } from './leases.js';
import { HandOffRefused, PartitionOwnership } from './partition-ownership.js';
import type { ClusterHealth } from '../system.js';
import { Reachability } from './reachability.js';
import { RedisMembership } from './redis-membership.js';
import { RedisRing } from './redis-ring.js';
import type { PartitionMove } from './ring.js';
import { ClusterTransport, type ClusterTransportOptions } from './transport.js';


export interface JoinClusterOptions {
  /** A URL, or Sentinels and a master name (runtime/redis-connection.ts). */
  redis: RedisTarget;
  name: string;
  host: string;
  port: number;
  advertise?: string;
  self: string;
  partitions: number;
  router: Router;
  ownership: Int32Array;
  deadlines: Float64Array;
  /** Per-partition tenures shared with the shards (see PartitionOwnershipOptions.tenures). */
  tenures?: Int32Array;
  shards: Remote<ShardControl>[];
  /** The node's data directory: the cluster incarnation and this node's tenures are remembered there. */
  dataDir: string;
  /** More gRPC services served on the cluster port (the inspector). */
  services?: ClusterTransportOptions['services'];
  /** Mutual TLS on the cluster port (cluster-tls.ts); without it, plaintext. */
  tls?: ClusterTransportOptions['tls'];
  /** The cluster port's gRPC connection limits. */
  limits?: ClusterTransportOptions['limits'];
  /** [frames] The largest frame taken on the cluster port (frame-limit.ts; default 16 MiB). */
  maxFrameBytes?: number;
  log: Logger;
}

export interface ClusterMember {
  readonly membership: RedisMembership;
  readonly ownership: PartitionOwnership;
  readonly transport: ClusterTransport;
  /** For inspection: the ring as this node sees it, and its leases. */
  readonly ring: RedisRing;
  readonly leases: PartitionLeases;
  readonly incarnation: ClusterIncarnation;
  /** What this node serves of what the ring gives it (/readyz, metrics, the inspector). */
  health(): ClusterHealth;
  /** Asks every other live member for its local answer to a view query. */
  queryPeers(type: string, args: unknown, timeoutMs?: number): Promise<unknown[]>;
  /** Graceful: leave the ring, hand every partition off, leave the membership. */
  leave(): Promise<void>;
  close(): Promise<void>;
}

export async function joinCluster(o: JoinClusterOptions): Promise<ClusterMember> {
  const log = o.log.child({ node: o.self });
  const redis = await connectRedis(o.redis, { role: 'command', purpose: `cluster "${o.name}" membership, ring and leases`, log });
  let incarnation: ClusterIncarnation;
  try {
    incarnation = await ClusterIncarnation.open({ redis, cluster: o.name, self: o.self, dataDir: o.dataDir, shards: o.shards.length, log });
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot check the incarnation of cluster "${o.name}" in Redis: ${(err as Error).message}`);
  }
  const shardCount = o.shards.length;
  let membership: RedisMembership | undefined;
  let ownership!: PartitionOwnership;
  let reachability: Reachability | undefined;

  const ring = await RedisRing.open({ redis, cluster: o.name, partitions: o.partitions, log });
  const replicas = ReplicaWait.forEndpoint(redis, o.redis, 'a partition lease grab or renewal', log);
  const leases = new PartitionLeases({ redis, cluster: o.name, self: o.self, partitions: o.partitions, deadlines: o.deadlines, incarnation: () => incarnation.expected(), replicas, log });
  ring.onChange((view) => incarnation.noteRingMembers(view.members));
  const router = o.router;
  const routing = new ClusterRouting({
    self: o.self,
    ownership: { state: (p: number) => ownership.state(p), ownerOf: (p: number) => ownership.ownerOf(p), unavailableWhy: () => ownership.unavailableWhy() } as PartitionOwnership,
    ring,
    log,
    local: {
      deliverLocal: (id, p, h, payload, origin, askId) => router.deliverLocal(id, p, h, payload, origin, askId),
      settleMain: (askId, ok, value) => router.pending.settle(askId, ok, value),
      replyToShard: (shard, askId, ok, value) => router.replyToShard(shard, askId, ok, value),
    },
    nodeRequest: async (handler, payload) => {
      if (handler !== 'query') throw new Error(`unknown node request "${handler}"`);
      const { type, args } = payload as { type: string; args: unknown };
      return Promise.all(o.shards.map((s) => s.query(type, args)));
    },
    // Until the membership is joined, every peer counts as one (nothing is routed before that).
    isMember: (peer) => membership === undefined || membership.info(peer) !== undefined,
    isReachable: (peer) => reachability?.isReachable(peer) !== false,
  });

  const transport = await ClusterTransport.start({
    self: o.self,
    cluster: o.name,
    partitions: o.partitions,
    host: o.host,
    port: o.port,
    resolve: (peer) => membership?.info(peer)?.address,
    onBatch: (from, m, r) => routing.onBatch(from, m, r),
    onRedirect: (from, epoch, owner, m) => void routing.onRedirect(from, epoch, owner, m),
    onHandOff: async (from, epoch, partitions, rows) => {
      // [frames] Only from the partitions' previous owner, at the current epoch (partition-ownership.ts).
      if (ownership === undefined) throw new HandOffRefused(`hand-off from node ${from} refused: this node does not follow the ring yet`);
      await ownership.checkHandOff(from, epoch, partitions, rows);
      // Store the shipped actors in the shards that will serve their partitions, then acknowledge.
      const perShard: unknown[][] = Array.from({ length: shardCount }, () => []);
      for (let i = 0; i < rows.length; i += HANDOFF_ROW_STRIDE) perShard[(rows[i + 1] as number) % shardCount]!.push(rows[i], rows[i + 1], rows[i + 2]);
      await Promise.all(perShard.map((r, s) => (r.length > 0 ? o.shards[s]!.install(r) : 0)));
    },
    onUnsendable: (peer, m, r, err) => routing.onUnsendable(peer, m, r, err),
    onMalformed: (from, err) => log.warn({ from, err: err.message }, 'malformed cluster frame dropped'),
    maxFrameBytes: o.maxFrameBytes, // [frames] --cluster-max-frame
    services: o.services,
    tls: o.tls,
    limits: o.limits,
    log,
  });
  routing.attach(transport);

  const host = o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host;
  membership = await RedisMembership.join({ redis, cluster: o.name, self: o.self, address: o.advertise ?? `${host}:${transport.port}`, log });
  // Peers this node cannot reach (while Redis still sees everyone): the rule of reachability.ts
  // decides which side keeps the partitions; this node leaves the ring while it is not on it.
  reachability = new Reachability({
    self: o.self,
    redis,
    cluster: o.name,
    links: transport,
    members: () => membership!.members(),
    startedAt: (id) => membership!.info(id)?.started,
    onCut: (peers) => {
      for (const peer of peers) routing.peerUnreachable(peer);
    },
    standDown: async () => void (await ring.leave(o.self)),
    standUp: async () => void (await ring.join(o.self)),
    log,
  });
  membership.onChange((members) => {
    const alive = new Set(members);
    for (const peer of transport.stats().map((s) => s.peer)) {
      if (alive.has(peer)) continue;
      transport.forget(peer);
      routing.peerGone(peer);
    }
  });

  /** Partitions grouped by the shard that serves them (partition p lives on shard p mod W). */
  const byShardOf = (partitions: Iterable<number>): number[][] => {
    const byShard: number[][] = Array.from({ length: shardCount }, () => []);
    for (const p of partitions) byShard[p % shardCount]!.push(p);
    return byShard;
  };

  const handOff = async (moves: PartitionMove[], epoch: number): Promise<void> => {
    // A hand-off deletes what the shards stored of the partitions (the new owner recovers them from
    // the changelogs). If Redis lost those (a ring raised after a restart moves partitions away),
    // the local snapshots are what a rebuild needs: keep them, and stop serving without shipping.
    // (A Redis that does not answer cannot have raised the ring: hand off with what is known.)
    await incarnation.check().catch((err: Error) => log.warn({ err: err.message }, 'cannot check the cluster incarnation before a hand-off; handing off'));
    if (incarnation.lost() !== '') throw new Error(`Redis lost the cluster's data (${incarnation.lost()}); not handing ${moves.length} partitions off, their snapshots stay for the rebuild`);
    const byShard = byShardOf(moves.map((m) => m.partition));
    const rowsByShard = await Promise.all(byShard.map((ps, s) => (ps.length > 0 ? o.shards[s]!.handOff(ps) : Promise.resolve([] as unknown[]))));
    const ownerOf = new Map(moves.map((m) => [m.partition, m.to]));
    const byPeer = new Map<string, { partitions: number[]; rows: unknown[] }>();
    for (const move of moves) {
      if (move.to === '') continue;
      let entry = byPeer.get(move.to);
      if (!entry) byPeer.set(move.to, (entry = { partitions: [], rows: [] }));
      entry.partitions.push(move.partition);
    }
    for (const rows of rowsByShard) {
      for (let i = 0; i < rows.length; i += HANDOFF_ROW_STRIDE) {
        const to = ownerOf.get(rows[i + 1] as number);
        if (to) byPeer.get(to)?.rows.push(rows[i], rows[i + 1], rows[i + 2]);
      }
    }
    // A new owner this node cannot reach gets nothing (it rebuilds durable actors from the changelogs);
    // waiting for its acknowledgement would only keep the leases from it until the timeout.
    const reachable = [...byPeer].filter(([peer]) => reachability?.isReachable(peer) !== false);
    if (reachable.length < byPeer.size) log.warn({ peers: [...byPeer.keys()].filter((p) => !reachability!.isReachable(p)) }, 'hand-off skipped to new owners this node cannot reach; their volatile actors start over');
    await Promise.all(reachable.map(([peer, { partitions, rows }]) => transport.handOff(peer, epoch, partitions, rows)));
    log.info({ partitions: moves.length, peers: byPeer.size, epoch }, 'partitions handed off');
  };

  ownership = new PartitionOwnership({
    self: o.self,
    ring,
    leases,
    ownership: o.ownership,
    tenures: o.tenures,
    membership,
    handOff,
    // Durable actors come from the partitions' changelogs, whoever had them before (runtime/shard.ts).
    acquire: async (ps, epoch) => {
      // The epoch fences the partitions' changelogs against writes of earlier tenures.
      const recovered = await Promise.all(byShardOf(ps).map((parts, s) => (parts.length > 0 ? o.shards[s]!.recover(parts, epoch) : 0)));
      const n = recovered.reduce((a, b) => a + b, 0);
      if (n > 0) log.info({ partitions: ps.length, actors: n }, 'partitions recovered from their changelogs');
      // Remembered before serving: if Redis loses its data, the newest tenure of each partition rebuilds it.
      incarnation.noteTenures(ps, epoch);
    },
    onServing: (ps) => routing.drain(ps),
    onUnavailable: (ps) => routing.drain(ps),
    onLost: (ps) => {
      // Activations of lost partitions go (their waiting messages come back here to be routed on),
      // then what the router held for them follows.
      void Promise.all(byShardOf(ps).map((parts, s) => (parts.length > 0 ? o.shards[s]!.forget(parts) : 0)))
        .catch((err: Error) => log.warn({ err: err.message }, 'forgetting lost partitions in the shards failed'))
        .finally(() => routing.drain(ps));
    },
    log,
  });
  router.setRemotePath(routing);
  incarnation.onChange(() => void ownership.reconcile());
  incarnation.watch();
  await ownership.start();
  reachability.start();
  log.info({ cluster: o.name, address: membership.info(o.self)?.address, serving: ownership.serving().length }, 'joined the cluster');

  let left = false;
  return {
    membership,
    ownership,
    transport,
    ring,
    leases,
    incarnation,
    health: () => ({ ...ownership.health(), clusterLost: incarnation.lost() }),
    async queryPeers(type: string, args: unknown, timeoutMs = 2000): Promise<unknown[]> {
      const peers = membership!.members().filter((m) => m !== o.self);
      const answers = await Promise.all(
        peers.map((peer) => {
          const { id, promise } = router.pending.create(`node ${peer}`, 'query', timeoutMs);
          routing.sendToNode(peer, 'query', { type, args }, MAIN_ORIGIN, id);
          return promise.then(
            (perShard) => perShard as unknown[],
            (err: Error) => {
              log.warn({ peer, err: err.message }, 'a member did not answer a view query; answering without it');
              return [] as unknown[];
            },
          );
        }),
      );
      return answers.flat();
    },
    async leave(): Promise<void> {
      if (left) return;
      left = true;
      reachability!.stop();
      await ownership.leave();
      await membership!.leave();
    },
    async close(): Promise<void> {
      reachability!.stop();
      ownership.stop();
      incarnation.close();
      routing.close();
      await transport.close();
      await membership!.close();
      await ring.close();
      redis.disconnect();
    },
  };
}
