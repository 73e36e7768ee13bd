// What one node tells the dashboard about itself: identity, health, CPU and memory, its view of
// the members and the ring, one byte per partition, per actor type counters and its services'
// figures. Built on demand (nothing is gathered while nobody asks); peers fetch it over HTTP.

import type { ServiceFigure } from '../gateway.js';
import type { TroupeNode } from '../node.js';
import type { TypeTallySnapshot } from '../turn-tally.js';

export type InspectorAccess = 'full' | 'read-only' | 'off';

/** What the dashboard reads on its node; `troupe node` (bin/) builds it from the running node. */
export interface DashboardSource {
  readonly node: TroupeNode;
  /** The inspector's mode: the dashboard lists actors and shows states only when it is not `off`. */
  readonly inspector: InspectorAccess;
  /** The services running here, each with its figures (if it has any). */
  services(): readonly { name: string; panel?: () => Promise<ServiceFigure[]> }[];
  /** The gateways' and the ops port, as bound. */
  ports(): Record<string, number>;
  /** Why the node is not ready (as /readyz says), or undefined. */
  notReady(): Promise<string | undefined>;
}

export interface LinkReport {
  peer: string;
  address: string;
  connected: boolean;
  queuedFrames: number;
  framesSent: number;
  stalls: number;
  dials: number;
}

export interface ServiceReport {
  name: string;
  figures: ServiceFigure[];
  /** The panel failed: why (the figures are then empty). */
  error?: string;
}

export interface NodeReport {
  nodeId: string;
  /** Cluster name, '' for a node on its own. */
  cluster: string;
  /** host:port of the cluster port (the inspector), '' when it has none. */
  address: string;
  pid: number;
  runtime: string;
  startedMs: number;
  atMs: number;
  uptimeMs: number;
  shards: number;
  partitions: number;
  inspector: InspectorAccess;
  ports: Record<string, number>;
  /** undefined: ready. */
  notReady?: string;
  /** Process CPU time (µs) so far, user plus system: the dashboard turns two reports into a share. */
  cpuMicros: number;
  rssBytes: number;
  heapUsedBytes: number;
  pendingAsks: number;
  /** The live members as this node sees them, with the address each advertises. */
  members: { nodeId: string; address: string; startedMs: number }[];
  ringEpoch: number;
  /** One character per partition: `s` serving here, `a` acquiring, `r` releasing, `.` elsewhere. */
  partitionStates: string;
  leasesHeld: number;
  links: LinkReport[];
  /** Per actor type, summed over the shards (the turns this node ran). */
  types: TypeTallySnapshot[];
  /** Per shard totals, the same numbers /metrics gives (troupe_turns_total and others). */
  totals: { turns: number; turnsFailed: number; activations: number; rejectedOverloaded: number; queued: number };
  services: ServiceReport[];
}

const STATE_CHARS: Record<string, string> = { serving: 's', acquiring: 'a', releasing: 'r' };

export async function nodeReport(source: DashboardSource): Promise<NodeReport> {
  const node = source.node;
  const inspected = node.inspected;
  const cluster = inspected.cluster();
  const [stats, types, notReady, services] = await Promise.all([
    node.stats(),
    node.typeTallies(),
    source.notReady().catch((err: Error) => `readiness check failed: ${err.message}`),
    Promise.all(
      source.services().map(async (s): Promise<ServiceReport> => {
        if (!s.panel) return { name: s.name, figures: [] };
        try {
          return { name: s.name, figures: await s.panel() };
        } catch (err) {
          return { name: s.name, figures: [], error: (err as Error).message };
        }
      }),
    ),
  ]);
  let states = '';
  if (!cluster) states = 's'.repeat(node.partitions);
  else {
    const chars: string[] = new Array(node.partitions);
    for (let p = 0; p < node.partitions; p++) chars[p] = STATE_CHARS[cluster.ownership.state(p)] ?? '.';
    states = chars.join('');
  }
  const address = inspected.address();
  const members = cluster
    ? cluster.membership.members().map((id) => {
        const info = cluster.membership.info(id);
        return { nodeId: id, address: info?.address ?? '', startedMs: info?.started ?? 0 };
      })
    : [{ nodeId: node.nodeId, address, startedMs: inspected.startedAt }];
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  const now = Date.now();
  const sum = (f: (s: (typeof stats.shards)[number]) => number) => stats.shards.reduce((a, s) => a + f(s), 0);
  return {
    nodeId: node.nodeId,
    cluster: cluster ? cluster.transport.cluster : '',
    address,
    pid: process.pid,
    runtime: `node ${process.version}`,
    startedMs: inspected.startedAt,
    atMs: now,
    uptimeMs: now - inspected.startedAt,
    shards: node.shardCount,
    partitions: node.partitions,
    inspector: source.inspector,
    ports: source.ports(),
    ...(notReady ? { notReady } : {}),
    cpuMicros: cpu.user + cpu.system,
    rssBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    pendingAsks: stats.pendingAsks,
    members,
    ringEpoch: cluster ? Math.max(0, cluster.ring.view().epoch) : 0,
    partitionStates: states,
    leasesHeld: cluster ? cluster.leases.held().length : node.partitions,
    links: (cluster?.transport.stats() ?? []).map((l) => ({
      peer: l.peer,
      address: l.address ?? '',
      connected: l.connected,
      queuedFrames: l.queuedFrames,
      framesSent: l.framesSent,
      stalls: l.stalls,
      dials: l.dials,
    })),
    types,
    totals: {
      turns: sum((s) => s.turns),
      turnsFailed: sum((s) => s.turnsFailed),
      activations: sum((s) => s.activations),
      rejectedOverloaded: sum((s) => s.rejectedOverloaded),
      queued: sum((s) => s.queued),
    },
    services,
  };
}
