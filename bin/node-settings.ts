// The settings of `troupe node`: the node's own, then each gateway's (de-duplicated by name).

import { availableParallelism, hostname } from 'node:os';
import type { Gateway, SettingSpec } from '../runtime/index.js';
import { GRPC_LIMIT_SETTINGS } from '../runtime/grpc-limits.js';
import { clusterMaxFrameSetting } from '../runtime/cluster/frame-limit.js';
import { redisSettings } from '../runtime/redis-settings.js';

/** Where the standard OpenTelemetry variables send traces, if they are set. */
function otlpDefault(): string | undefined {
  const traces = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (traces) return traces;
  const base = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined;
}

export function nodeSettings(gateways: readonly Gateway[]): SettingSpec[] {
  const own: SettingSpec[] = [
    { name: 'node-name', kind: 'string', default: hostname(), description: 'stable name of this node; names its data directory' },
    { name: 'host', kind: 'string', default: '0.0.0.0', description: 'address every service binds' },
    { name: 'data-dir', kind: 'string', default: undefined, description: 'where snapshots and embedded tables live (default ./data/<node-name>)' },
    { name: 'shards', kind: 'int', min: 1, max: 256, default: availableParallelism(), description: 'worker threads that host actors' },
    { name: 'partitions', kind: 'int', min: 1, max: 1 << 20, default: 1024, description: 'partitions of the actor space; fixed for the life of a cluster' },
    { name: 'gateways', kind: 'list', choices: gateways.map((g) => g.name), default: gateways.map((g) => g.name), description: 'which services this node runs' },
    { name: 'cluster-port', kind: 'port', default: 7070, description: 'node-to-node gRPC and the inspector' },
    clusterMaxFrameSetting, // [frames] --cluster-max-frame (runtime/cluster/frame-limit.ts)
    {
      name: 'inspector',
      kind: 'enum',
      choices: ['full', 'read-only', 'off'],
      default: undefined,
      description: 'the inspector (troupe inspect) on the cluster port: full, read-only (no ask or tell) or off (default read-only in a cluster, full alone)',
    },
    {
      name: 'inspector-port',
      kind: 'port',
      default: undefined,
      description: 'serve the inspector on its own listener on 127.0.0.1 at this port (0: any free port), not on the cluster port; same TLS settings',
    },
    {
      name: 'inspector-host',
      kind: 'string',
      default: undefined,
      description: 'address the inspector of a node without --redis binds (default 127.0.0.1: this machine only); in a cluster it shares the cluster port on --host',
    },
    { name: 'tls-ca', kind: 'string', default: undefined, description: "mutual TLS on the cluster port and the inspector: the cluster's CA certificate, PEM (troupe certs create-ca)" },
    { name: 'tls-cert', kind: 'string', default: undefined, description: "this node's certificate, PEM, issued by --tls-ca and naming --node-name (troupe certs issue); reloaded when the file changes" },
    { name: 'tls-key', kind: 'string', default: undefined, description: 'the private key of --tls-cert, PEM (keep it 0600)' },
    {
      name: 'insecure-cluster',
      kind: 'bool',
      default: false,
      description: 'in a cluster (--redis), allow plaintext on the cluster port without --tls-*: anyone who reaches the port is a member (a laptop only)',
    },
    { name: 'ops-port', kind: 'port', default: 9464, description: 'Prometheus /metrics, /healthz, /readyz' },
    { name: 'ask-timeout', kind: 'duration', min: 1, default: 5000, description: 'default time an ask waits for its reply' },
    { name: 'durability', kind: 'enum', choices: ['normal', 'full'], default: 'normal', description: 'SQLite sync: normal survives a process crash, full also a power cut' },
    { name: 'redis', kind: 'url', default: undefined, example: 'redis://127.0.0.1:6379', description: 'Redis URL: join a cluster and queue event batches in BullMQ' },
    ...redisSettings,
    { name: 'postgres', kind: 'url', default: undefined, example: 'postgres://postgres@127.0.0.1:5432/test', description: 'PostgreSQL URL for the domain tables (default: SQLite in the data dir)' },
    { name: 'cluster', kind: 'string', default: 'troupe', description: 'cluster name; the prefix of every Redis key of this cluster' },
    { name: 'advertise', kind: 'string', default: undefined, description: 'HOST:PORT other nodes use to reach this one (default host:cluster-port)' },
    {
      name: 'otlp-endpoint',
      kind: 'url',
      default: otlpDefault(),
      example: 'http://collector:4318/v1/traces',
      description: 'send OpenTelemetry traces over OTLP/HTTP to this URL, e.g. http://collector:4318/v1/traces (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; unset: no tracing)',
    },
    {
      name: 'trace-sample-ratio',
      kind: 'number',
      min: 0,
      max: 1,
      default: 0.01,
      description: "share of requests that start a trace, 0 to 1; a caller's sampled traceparent is always followed",
    },
    // The cluster port is a gRPC server too; presence and carts read the same settings.
    ...GRPC_LIMIT_SETTINGS,
    { name: 'log-level', kind: 'enum', choices: ['trace', 'debug', 'info', 'warn', 'error', 'silent'], default: 'info', description: 'log level' },
  ];
  const seen = new Set(own.map((s) => s.name));
  const all = [...own];
  for (const g of gateways) {
    for (const s of g.settings) {
      if (seen.has(s.name)) continue;
      seen.add(s.name);
      all.push(s);
    }
  }
  return all;
}
