// `troupe node`: starts a node with the chosen gateways, its ops port, and graceful shutdown.

import { join, resolve } from 'node:path';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { pino } from 'pino';
import {
  ConfigError,
  startNode,
  type Gateway,
  type Logger,
  type RunningGateway,
  type SettingValues,
} from '../runtime/index.js';
import { grpcLimitsFrom } from '../runtime/grpc-limits.js';
import { setRootLogger } from '../runtime/log.js';
import { redisEndpointFrom } from '../runtime/redis-settings.js';
import { newNodeId } from '../runtime/node.js';
import { checkTlsFiles } from '../runtime/cluster/cluster-tls.js';
import { registerRuntimeMetrics, startOpsServer } from '../runtime/ops-server.js';
import { createDashboard } from '../runtime/dashboard/dashboard.js';

export async function runNode(values: SettingValues, gateways: readonly Gateway[]): Promise<number> {
  const log = pino({ level: String(values['log-level']), base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }) as unknown as Logger;
  setRootLogger(log);
  process.env.TROUPE_LOG_LEVEL = String(values['log-level']);
  const name = String(values['node-name']);
  const dataDir = resolve(String(values['data-dir'] ?? join('data', name)));
  const chosen = gateways.filter((g) => (values.gateways as string[]).includes(g.name));
  const actorModules = [...new Set(chosen.flatMap((g) => g.actorModules))];
  // Filled once the gateways and the ops port are bound; the inspector reports them.
  const ports: Record<string, number> = {};
  // In a cluster the inspector shares the cluster port, which peers must reach on --host. A node
  // alone opens that port for the inspector only, and an inspector can send any actor any message
  // past the gateways' own checks: so alone it listens on loopback unless told otherwise.
  // A URL or Sentinels and a master: checked together, before anything starts.
  const redis = redisEndpointFrom(values);
  if (redis && values['inspector-host'] !== undefined) {
    throw new ConfigError(
      `setting inspector-host: applies to a node without --redis; in a cluster the inspector shares the cluster port on --host (${String(values.host)}). Drop --inspector-host, or use --inspector read-only|off`,
    );
  }
  const otlp = values['otlp-endpoint'];
  if (otlp !== undefined && !/^https?:$/.test(new URL(String(otlp)).protocol)) {
    throw new ConfigError(`setting otlp-endpoint: got "${String(otlp)}"; traces go over OTLP/HTTP, so give an http:// or https:// URL such as http://collector:4318/v1/traces`);
  }
  const inspectorHost = redis ? String(values.host) : String(values['inspector-host'] ?? '127.0.0.1');
  // The name peers check: a node id is `<name>-<time>-<random>` and its certificate names <name>.
  const idName = name.replace(/[^A-Za-z0-9-]/g, '-');
  const tls = clusterTlsFrom(values, redis !== undefined, idName);
  // In a cluster the inspector answers anyone with a certificate of the cluster's CA: read-only
  // unless asked. Alone it is on loopback (or where --inspector-host says) and full.
  const inspectorMode = (values.inspector ?? (redis ? 'read-only' : 'full')) as 'full' | 'read-only' | 'off';
  const inspectorPort = values['inspector-port'] === undefined ? undefined : Number(values['inspector-port']);

  const node = await startNode({
    nodeId: newNodeId(idName),
    dataDir,
    shards: Number(values.shards),
    partitions: Number(values.partitions),
    actorModules,
    settings: { ...values },
    askTimeoutMs: Number(values['ask-timeout']),
    grpcLimits: grpcLimitsFrom(values),
    durability: values.durability as 'normal' | 'full',
    cluster: redis
      ? {
          redis,
          name: String(values.cluster),
          host: String(values.host),
          port: Number(values['cluster-port']),
          advertise: values.advertise === undefined ? undefined : String(values.advertise),
          maxFrameBytes: Number(values['cluster-max-frame']), // [frames]
        }
      : undefined,
    inspector:
      inspectorMode === 'off'
        ? undefined
        : inspectorPort !== undefined
          ? { mode: inspectorMode, host: redis ? '127.0.0.1' : String(values['inspector-host'] ?? '127.0.0.1'), port: inspectorPort, ownListener: true, ports: () => ports }
          : { mode: inspectorMode, host: inspectorHost, port: Number(values['cluster-port']), ports: () => ports },
    tls,
    tracing: values['otlp-endpoint'] === undefined ? undefined : { endpoint: String(values['otlp-endpoint']), sampleRatio: Number(values['trace-sample-ratio']) },
    log,
  });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerRuntimeMetrics(registry, node);

  const running: { gateway: Gateway; handle: RunningGateway }[] = [];
  let shuttingDown = false;
  const shutdown = async (why: string): Promise<number> => {
    if (shuttingDown) return 0;
    shuttingDown = true;
    log.info({ why }, 'shutting down: stop accepting, finish turns in flight, commit');
    for (const { gateway, handle } of running.reverse()) {
      try {
        await handle.stop();
      } catch (err) {
        log.error({ err, gateway: gateway.name }, 'gateway did not stop cleanly');
      }
    }
    await ops?.close();
    await node.stop();
    log.info({}, 'stopped');
    return 0;
  };

  let ops: Awaited<ReturnType<typeof startOpsServer>> | undefined;
  try {
    for (const gateway of chosen) {
      const handle = await gateway.start({
        system: node,
        membership: node.membership,
        settings: values,
        metrics: registry,
        log: log.child({ gateway: gateway.name }),
        dataDir,
        host: String(values.host),
      });
      running.push({ gateway, handle });
    }
    const notReady = async () => {
      const unserved = node.notReady();
      if (unserved) return `cluster: ${unserved}`;
      for (const { gateway, handle } of running) {
        const why = await handle.notReady?.();
        if (why) return `${gateway.name}: ${why}`;
      }
      return undefined;
    };
    const dashboard = createDashboard({
      node,
      inspector: inspectorMode,
      services: () => running.map(({ gateway, handle }) => ({ name: gateway.name, panel: handle.panel?.bind(handle) })),
      ports: () => ports,
      notReady,
    }, { peerTls: tls });
    ops = await startOpsServer({
      host: String(values.host),
      port: Number(values['ops-port']),
      registry,
      notReady,
      dashboard,
    });
  } catch (err) {
    log.error({ err }, 'start failed');
    await shutdown('start failed');
    throw err;
  }

  if (node.clusterPort !== undefined) ports.cluster = node.clusterPort;
  if (inspectorPort !== undefined && node.inspectorPort !== undefined) ports.inspector = node.inspectorPort;
  ports.ops = ops.port;
  for (const { gateway, handle } of running) for (const [k, v] of Object.entries(handle.ports)) ports[`${gateway.name}.${k}`] = v;
  log.info({ nodeId: node.nodeId, dataDir, shards: node.shardCount, ports, clusterTls: tls !== undefined, inspector: inspectorMode }, 'node ready');
  process.stderr.write(
    `troupe: node ${node.nodeId} ready; data in ${dataDir}\n` +
      Object.entries(ports)
        .map(([k, v]) => `troupe:   ${k.padEnd(24)} ${k === 'inspector' ? '127.0.0.1' : k === 'cluster' ? inspectorHost : String(values.host)}:${v}\n`)
        .join(''),
  );

  return new Promise<number>((resolveExit) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (shuttingDown) {
        log.warn({ signal }, 'second signal: exiting at once');
        process.exit(1);
      }
      shutdown(signal).then(resolveExit, (err) => {
        log.error({ err }, 'shutdown failed');
        resolveExit(1);
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    node.failed.then((err) => {
      log.error({ err: err.message }, 'a shard failed; the node stops');
      resolveExit(2);
    });
  });
}

/**
 * The TLS files of the cluster port, checked now with every other problem: all three or none; in a
 * cluster, none only with --insecure-cluster. Returns undefined for plaintext.
 */
function clusterTlsFrom(values: SettingValues, inCluster: boolean, idName: string): { ca: string; cert: string; key: string } | undefined {
  const names = ['tls-ca', 'tls-cert', 'tls-key'] as const;
  const given = names.filter((n) => values[n] !== undefined);
  const make = `troupe certs create-ca --out DIR, then troupe certs issue --ca DIR --name ${idName} --out DIR`;
  if (given.length === 0) {
    if (inCluster && values['insecure-cluster'] !== true) {
      throw new ConfigError(
        'this node joins a cluster (--redis) and its cluster port would be plaintext, open to anyone who reaches it as a member. ' +
          `Give --tls-ca FILE --tls-cert FILE --tls-key FILE (TROUPE_TLS_CA, TROUPE_TLS_CERT, TROUPE_TLS_KEY; make them with ${make}), ` +
          'or --insecure-cluster to run the cluster in plaintext on purpose (a laptop, never a shared network)',
      );
    }
    return undefined;
  }
  const problems: string[] = [];
  if (given.length < names.length) {
    const missing = names.filter((n) => values[n] === undefined);
    problems.push(`settings ${names.join(', ')}: give all three or none; ${given.map((n) => `--${n}`).join(' and ')} without ${missing.map((n) => `--${n}`).join(' and ')}`);
  }
  if (values['insecure-cluster'] === true) problems.push('settings insecure-cluster and tls-*: both given; drop --insecure-cluster (TROUPE_INSECURE_CLUSTER) to use TLS, or the --tls-* settings for plaintext');
  if (problems.length === 0) {
    const files = { ca: String(values['tls-ca']), cert: String(values['tls-cert']), key: String(values['tls-key']) };
    problems.push(...checkTlsFiles({ ...files, expectName: inCluster ? idName : undefined }).problems);
    if (problems.length === 0) return files;
  }
  throw new ConfigError(problems.join('\n'));
}
