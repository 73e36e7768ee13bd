// Where a cluster keeps its state in Redis: every key and channel under `troupe:{NAME}:`, so that
// several clusters share one Redis and, with the {hash tag}, one Redis Cluster slot (the Lua
// scripts touch several of these keys at once).

export interface ClusterKeys {
  readonly prefix: string;
  /** ZSET node id -> deadline (Redis server ms) after which the node counts as dead. */
  readonly members: string;
  /** HASH of one node: address, start time. Expires with the node. */
  node(id: string): string;
  /** HASH of one node's gauges. Expires with the node. */
  gauges(id: string): string;
  /** HASH { epoch } of the ring. */
  readonly ringMeta: string;
  /** SET of the ring's member ids. */
  readonly ringMembers: string;
  /** STRING "epoch|node" of one partition's lease, with a TTL. */
  lease(partition: number): string;
  /** HASH actor id -> last acknowledged state (encoded) of one partition's durable actors: its changelog, compacted. */
  changelog(partition: number): string;
  /**
   * HASH of the cluster's incarnation: `id` (random, written when the cluster is created), `lost`
   * (present while Redis is known to have lost the cluster's data: nothing is served), `stale`
   * and `replaces` (incarnations nodes remembered, and those an operator accepted losing).
   */
  readonly incarnation: string;
  /** HASH partition -> "epoch|node": during a rebuild, the newest tenure that published the partition's rows. */
  readonly rebuild: string;
  /** STRING: the ring epoch of the newest tenure that took the partition over; changelog writes of older tenures are refused. */
  changelogFence(partition: number): string;
  /** SET of the peers one node cannot reach now (runtime/cluster/reachability.ts), with a TTL. */
  unreachable(id: string): string;
  /** Pub/sub: member joined, left or died (payload: the node id). */
  readonly membersChannel: string;
  /** Pub/sub: the ring changed (payload: the new epoch). */
  readonly ringChannel: string;
}

/** Cluster names are short and plain, so that keys stay readable in redis-cli. */
const CLUSTER_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function clusterKeys(cluster: string): ClusterKeys {
  if (!CLUSTER_NAME.test(cluster)) {
    throw new TypeError(`cluster name "${cluster}" must be 1 to 64 letters, digits, "_", "." or "-"`);
  }
  const prefix = `troupe:{${cluster}}:`;
  return {
    prefix,
    members: prefix + 'members',
    node: (id) => prefix + 'node:' + id,
    gauges: (id) => prefix + 'gauges:' + id,
    ringMeta: prefix + 'ring',
    ringMembers: prefix + 'ring:members',
    lease: (p) => prefix + 'lease:' + p,
    changelog: (p) => prefix + 'changelog:' + p,
    incarnation: prefix + 'incarnation',
    rebuild: prefix + 'rebuild',
    changelogFence: (p) => prefix + 'changelog-fence:' + p,
    unreachable: (id) => prefix + 'unreachable:' + id,
    membersChannel: prefix + 'members:changed',
    ringChannel: prefix + 'ring:changed',
  };
}
