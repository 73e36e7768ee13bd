// The node's ops port: Prometheus /metrics, /healthz (the process answers) and /readyz (every
// gateway and dependency is ready), for orchestrators and people.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gauge, Counter, type Registry } from 'prom-client';
import type { Dashboard } from './dashboard/dashboard.js';
import type { ActorSystem, NodeStats } from './system.js';

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Registers the runtime's own metrics (read from the shards at scrape time). */
export function registerRuntimeMetrics(registry: Registry, system: ActorSystem): void {
  let last: Awaited<ReturnType<ActorSystem['stats']>> | undefined;
  let lastAt = 0;
  const snapshot = async () => {
    if (!last || Date.now() - lastAt > 500) {
      last = await system.stats();
      lastAt = Date.now();
    }
    return last;
  };
  const perShard = (name: string, help: string, field: 'activations' | 'queued', kind: 'gauge') =>
    new Gauge({
      name,
      help,
      labelNames: ['shard'],
      registers: [registry],
      async collect() {
        const s = await snapshot();
        for (const sh of s.shards) this.set({ shard: String(sh.shard) }, sh[field]);
      },
    });
  perShard('troupe_activations', 'Live actor activations per shard', 'activations', 'gauge');
  perShard('troupe_shard_queue', 'Messages posted to a shard and not yet taken in', 'queued', 'gauge');
  const totals = (
    name: string,
    help: string,
    field: 'turns' | 'turnsFailed' | 'commits' | 'committedStates' | 'activationsTotal' | 'passivationsTotal' | 'rejectedOverloaded' | 'changelogWrites' | 'changelogStates' | 'changelogFailures' | 'changelogRefused',
  ) =>
    new Counter({
      name,
      help,
      labelNames: ['shard'],
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        for (const sh of s.shards) this.inc({ shard: String(sh.shard) }, sh[field]);
      },
    });
  totals('troupe_turns_total', 'Turns run', 'turns');
  totals('troupe_turns_failed_total', 'Turns whose handler threw', 'turnsFailed');
  totals('troupe_commits_total', 'Snapshot transactions committed', 'commits');
  totals('troupe_committed_states_total', 'Actor states committed', 'committedStates');
  totals('troupe_activations_total', 'Actors activated', 'activationsTotal');
  totals('troupe_passivations_total', 'Actors passivated after their idle timeout', 'passivationsTotal');
  totals('troupe_rejected_overloaded_total', 'Messages refused because a mailbox was full', 'rejectedOverloaded');
  totals('troupe_changelog_writes_total', 'Cluster: writes of committed durable states to the partition changelogs in Redis', 'changelogWrites');
  totals('troupe_changelog_states_total', 'Cluster: durable states written to the partition changelogs', 'changelogStates');
  totals('troupe_changelog_failures_total', 'Cluster: changelog writes Redis did not take (their turns were not acknowledged; retried)', 'changelogFailures');
  totals('troupe_changelog_refused_total', 'Cluster: states the changelog refused because the partition lease had moved', 'changelogRefused');
  // Cluster: partitions the ring gives this node and nobody serves, and why (summed over the nodes,
  // troupe_partitions_unserved is the cluster's count of partitions served by nobody).
  const cluster = (name: string, help: string, value: (h: NonNullable<NodeStats['cluster']>) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const h = (await snapshot()).cluster;
        if (h) this.set(value(h));
      },
    });
  cluster('troupe_partitions_owned', 'Cluster: partitions the ring gives this node', (h) => h.owned);
  cluster('troupe_partitions_serving', 'Cluster: partitions this node serves now (lease held by its own clock)', (h) => h.serving);
  cluster('troupe_partitions_unserved', 'Cluster: partitions the ring gives this node that it does not serve now (acquiring, unavailable, or lease lapsed)', (h) => h.owned - h.serving);
  cluster('troupe_partitions_unavailable', 'Cluster: partitions this node cannot take (Redis unreachable, or it lost the cluster data); asks to them fail with PARTITION_UNAVAILABLE', (h) => h.unavailable);
  cluster('troupe_ring_epoch', "Cluster: the ring epoch of this node's view", (h) => h.epoch);
  cluster('troupe_cluster_data_lost', "Cluster: 1 while the cluster is marked lost (Redis lost its data; troupe recover --accept serves again)", (h) => (h.clusterLost === '' ? 0 : 1));
  cluster('troupe_redis_unanswered_seconds', "Cluster: seconds since Redis last answered this node's ring or lease calls", (h) => h.sinceRedisAnsweredMs / 1000);
  cluster('troupe_lease_stale_epoch_refusals', 'Cluster: lease grabs and renewals Redis refused at a stale ring epoch, since start', (h) => h.staleEpochRefusals);
  cluster('troupe_ring_epoch_raises', 'Cluster: times this node found Redis behind its ring epoch (it lost the ring) and raised it, since start', (h) => h.epochRaises);
  new Gauge({
    name: 'troupe_pending_asks',
    help: 'Asks from the main thread waiting for a reply',
    registers: [registry],
    async collect() {
      this.set((await snapshot()).pendingAsks);
    },
  });
}

export async function startOpsServer(options: {
  host: string;
  port: number;
  registry: Registry;
  notReady: () => Promise<string | undefined>;
  /** GET /dashboard and /dashboard/api/... (runtime/dashboard); without it, no dashboard. */
  dashboard?: Dashboard;
}): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    if (options.dashboard?.handle(req, res)) return;
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET') return reply(405, 'text/plain', 'only GET\n');
    if (path === '/metrics') {
      options.registry
        .metrics()
        .then((text) => reply(200, options.registry.contentType, text))
        .catch((err: Error) => reply(500, 'text/plain', `metrics failed: ${err.message}\n`));
    } else if (path === '/healthz') {
      reply(200, 'text/plain', 'ok\n');
    } else if (path === '/readyz') {
      options
        .notReady()
        .then((why) => (why ? reply(503, 'text/plain', `not ready: ${why}\n`) : reply(200, 'text/plain', 'ready\n')))
        .catch((err: Error) => reply(503, 'text/plain', `not ready: ${err.message}\n`));
    } else reply(404, 'text/plain', `not found: try /metrics, /healthz, /readyz${options.dashboard ? ' or /dashboard' : ''}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        options.dashboard?.close();
        server.close(() => resolve());
        // An open dashboard keeps a connection alive; it must not hold the node's shutdown.
        server.closeIdleConnections();
      }),
  };
}
