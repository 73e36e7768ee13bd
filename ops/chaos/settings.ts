// The settings of `troupe chaos`, and the checks between them that one setting alone cannot make,
// all reported together with what to do, as every troupe command does at the door.

import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { SettingSpec, SettingValues } from '../../runtime/settings.js';

export type Workload = 'events' | 'carts' | 'counters';

/** The fault kinds, by the names --faults takes. */
export const FAULT_KINDS = ['kill', 'pause', 'stop', 'partition', 'slow-link', 'redis-restart', 'redis-pause', 'redis-failover', 'pg-restart'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** Faults of the servers themselves: chaos must own them (no --redis / --postgres). */
export const REDIS_FAULTS: readonly FaultKind[] = ['redis-restart', 'redis-pause', 'redis-failover'];
export const POSTGRES_FAULTS: readonly FaultKind[] = ['pg-restart'];
/** Faults that cut or slow links: the nodes run in network namespaces of the run. */
export const NETWORK_FAULTS: readonly FaultKind[] = ['partition', 'slow-link'];

/** The tests' MySQL account (.ci/mysql-test-user.sql: troupe_test may use databases named troupe_*). */
export const DEFAULT_CHAOS_MYSQL_URL = 'mysql://troupe_test:troupe_test@127.0.0.1:3306';

export const CHAOS_SETTINGS: SettingSpec[] = [
  { name: 'nodes', kind: 'int', min: 2, max: 9, default: 3, description: 'troupe node processes in the cluster (at least 2: the load needs a node while another is down)' },
  { name: 'duration', kind: 'duration', min: 5000, default: 60_000, description: 'how long the load and the faults run (then the pipeline drains and the stores are checked)' },
  { name: 'faults', kind: 'list', choices: [...FAULT_KINDS], default: ['kill', 'pause'], description: 'fault kinds to inject: kill, pause, stop (nodes), partition, slow-link (a node\'s links, in network namespaces), redis-restart, redis-pause, redis-failover, pg-restart (servers chaos starts itself)' },
  { name: 'overlap', kind: 'int', min: 1, max: 4, default: 1, description: 'faults that may run at the same time (1: one after another)' },
  { name: 'fault-every', kind: 'duration', default: undefined, description: 'how often each kind other than kill, pause and stop comes (default 15s, or 8s times the number of those kinds when more; at most half of --duration)' },
  { name: 'fault-for', kind: 'duration', min: 500, default: 6000, description: 'how long a partition, a slow link or a Redis pause lasts before it heals (a Redis pause is made at least 3 lease TTLs, 6s)' },
  { name: 'kill-every', kind: 'duration', default: undefined, description: 'SIGKILL a random node this often and restart it on its data dir (0: no kills; default 10s, or a third of --duration when shorter)' },
  { name: 'pause-every', kind: 'duration', default: undefined, description: 'SIGSTOP a random node this often, SIGCONT it after --pause-for (0: no pauses; default 15s, or half of --duration when shorter)' },
  { name: 'stop-every', kind: 'duration', default: undefined, description: 'SIGTERM a random node this often (graceful leave) and start it again (0: none; default 20s when stop is in --faults, or half of --duration; given alone it adds stop to --faults)' },
  { name: 'down-for', kind: 'duration', default: 1000, description: 'how long a killed or stopped node stays down before it is started again' },
  { name: 'pause-for', kind: 'duration', min: 100, default: 5000, description: 'how long a paused node stays stopped; past 2 s it is declared dead and its leases and job locks lapse' },
  { name: 'redis', kind: 'url', default: undefined, description: 'Redis URL of a server chaos does not own (default: chaos starts its own on a free port); chaos uses keys of its own and deletes them; refuses the Redis faults' },
  { name: 'postgres', kind: 'url', default: undefined, description: 'PostgreSQL URL of a server chaos does not own (default: chaos starts its own from initdb); chaos works in a schema of its own and drops it; refuses pg-restart' },
  { name: 'events-store', kind: 'enum', choices: ['postgres', 'mysql'], default: 'postgres', description: 'where the nodes store processed events: postgres (the run\'s PostgreSQL schema) or mysql (a database of the run in --mysql); carts stay in PostgreSQL either way' },
  { name: 'mysql', kind: 'url', default: DEFAULT_CHAOS_MYSQL_URL, description: 'with --events-store mysql: the MySQL 8 / MariaDB 10.6+ server, mysql://USER:PASS@HOST:PORT without a database, of a server chaos does not own; chaos creates the database troupe_chaos_<run> in it and drops it at the end (the user needs CREATE and DROP on troupe_chaos_*)' },
  { name: 'seed', kind: 'int', min: 0, max: 2 ** 31 - 1, default: undefined, description: 'seed of the fault plan (default: random, printed so a run can be repeated)' },
  { name: 'workloads', kind: 'list', choices: ['events', 'carts', 'counters'], default: ['events', 'carts', 'counters'], description: 'load to run: events (POST /events/batch), carts (gRPC Cart/AddItem), counters (durable chaos counters, each increment an ask)' },
  { name: 'rate', kind: 'int', min: 0, max: 1_000_000, default: 2000, description: 'events per second offered to the cluster (0: as fast as the nodes answer)' },
  { name: 'batch-size', kind: 'int', min: 1, max: 100, default: 20, description: 'events per POST /events/batch' },
  { name: 'concurrency', kind: 'int', min: 1, max: 256, default: 16, description: 'event batch requests in flight at once' },
  { name: 'cart-rate', kind: 'int', min: 0, max: 100_000, default: 50, description: 'Cart/AddItem calls per second (0: as fast as the nodes answer); 4 in flight' },
  { name: 'counter-rate', kind: 'int', min: 0, max: 100_000, default: 40, description: 'counter increments per second (0: as fast as the nodes answer); 4 in flight' },
  { name: 'drain-timeout', kind: 'duration', min: 1000, default: 60_000, description: 'after the load, how long to wait for every acknowledged event to be stored' },
  { name: 'shards', kind: 'int', min: 1, max: 16, default: 1, description: 'worker threads per node' },
  { name: 'work-dir', kind: 'string', default: tmpdir(), description: 'where the run keeps its nodes\' data directories and logs (a new directory inside it)' },
  { name: 'keep', kind: 'bool', default: false, description: 'keep the data directories and node logs after the run (the schema and Redis keys are always removed)' },
  { name: 'json', kind: 'bool', default: false, description: 'end with the report as one JSON line on stdout' },
  { name: 'node-log-level', kind: 'enum', choices: ['trace', 'debug', 'info', 'warn', 'error', 'silent'], default: 'warn', description: 'log level of the nodes (their logs go to files in the work directory)' },
];

export interface ChaosOptions {
  nodes: number;
  durationMs: number;
  faults: FaultKind[];
  overlap: number;
  killEveryMs: number;
  pauseEveryMs: number;
  stopEveryMs: number;
  /** The interval of every kind other than kill, pause and stop. */
  faultEveryMs: number;
  faultForMs: number;
  downForMs: number;
  pauseForMs: number;
  /** Undefined: chaos starts and owns its own server. */
  redisUrl?: string;
  postgresUrl?: string;
  eventsStore: 'postgres' | 'mysql';
  /** The MySQL server (no database) when eventsStore is mysql. */
  mysqlUrl?: string;
  seed: number;
  workloads: Workload[];
  eventsPerSecond: number;
  batchSize: number;
  concurrency: number;
  cartAddsPerSecond: number;
  counterAddsPerSecond: number;
  drainTimeoutMs: number;
  shards: number;
  workDir: string;
  keep: boolean;
  json: boolean;
  nodeLogLevel: string;
}

function seconds(ms: number): string {
  return `${+(ms / 1000).toFixed(3)}s`;
}

/**
 * The checks between settings; returns the options, or the problems (one line each, in the words
 * of readSettings: what was given, what is expected).
 */
export function chaosOptionsFrom(values: SettingValues, randomSeed: () => number): { options?: ChaosOptions; problems: string[] } {
  const problems: string[] = [];
  const redis = values['redis'] as string | undefined;
  const postgres = values['postgres'] as string | undefined;
  if (redis && !/^rediss?:$/.test(new URL(redis).protocol)) problems.push(`setting redis: got "${redis}"; expected a redis:// or rediss:// URL`);
  if (postgres && !/^postgres(ql)?:$/.test(new URL(postgres).protocol)) problems.push(`setting postgres: got "${postgres}"; expected a postgres:// or postgresql:// URL`);

  const eventsStore = values['events-store'] as 'postgres' | 'mysql';
  const mysqlUrl = values['mysql'] as string | undefined;
  if (eventsStore === 'mysql') problems.push(...mysqlProblems(mysqlUrl));

  const duration = values['duration'] as number;
  const faults = [...new Set((values['faults'] as string[]) ?? [])] as FaultKind[];
  // --stop-every given alone keeps its old meaning: it adds graceful stops to the default faults.
  if (values['stop-every'] !== undefined && (values['stop-every'] as number) > 0 && !faults.includes('stop')) faults.push('stop');
  const owned = (kinds: readonly FaultKind[]) => faults.filter((f) => kinds.includes(f));
  if (redis && owned(REDIS_FAULTS).length) problems.push(`setting faults: ${owned(REDIS_FAULTS).join(', ')} need${owned(REDIS_FAULTS).length === 1 ? 's' : ''} a Redis chaos starts itself, and --redis ${redis} names one it does not own (chaos never stops, pauses or restarts a server it did not start); leave out --redis, or these faults`);
  if (postgres && owned(POSTGRES_FAULTS).length) problems.push(`setting faults: pg-restart needs a PostgreSQL chaos starts itself, and --postgres names one it does not own (chaos never stops or restarts a server it did not start); leave out --postgres, or pg-restart`);
  // Unset intervals fit the duration; intervals given are checked against it.
  const every: Record<string, number> = {
    'kill-every': (values['kill-every'] as number | undefined) ?? Math.min(10_000, Math.floor(duration / 3)),
    'pause-every': (values['pause-every'] as number | undefined) ?? Math.min(15_000, Math.floor(duration / 2)),
    'stop-every': (values['stop-every'] as number | undefined) ?? (faults.includes('stop') ? Math.min(20_000, Math.floor(duration / 2)) : 0),
    // Several kinds share the run: each comes less often, so that most of the plan fits.
    'fault-every': (values['fault-every'] as number | undefined) ?? Math.min(Math.max(15_000, 8000 * faults.filter((f) => f !== 'kill' && f !== 'pause' && f !== 'stop').length), Math.floor(duration / 2)),
  };
  for (const name of Object.keys(every)) {
    const given = every[name]!;
    if (given > 0 && given >= duration) {
      problems.push(`setting ${name}: got ${seconds(given)}, not shorter than --duration ${seconds(duration)}, so it would never happen; shorten it, lengthen --duration, or give 0 to turn it off`);
    } else if (given > 0 && given < 1000) {
      problems.push(`setting ${name}: got ${seconds(given)}; expected at least 1s (a restarted node needs a moment to rejoin), or 0 to turn it off`);
    }
  }
  const workloads = (values['workloads'] as string[]) ?? [];
  if (workloads.length === 0) problems.push('setting workloads: empty; expected events, carts, counters or several');
  const workDir = String(values['work-dir']);
  if (!existsSync(workDir) || !statSync(workDir).isDirectory()) problems.push(`setting work-dir: "${workDir}" is not a directory; create it or choose another`);

  if (problems.length) return { problems };
  return {
    problems,
    options: {
      nodes: values['nodes'] as number,
      durationMs: duration,
      faults,
      overlap: values['overlap'] as number,
      killEveryMs: faults.includes('kill') ? every['kill-every']! : 0,
      pauseEveryMs: faults.includes('pause') ? every['pause-every']! : 0,
      stopEveryMs: faults.includes('stop') ? every['stop-every']! : 0,
      faultEveryMs: every['fault-every']!,
      faultForMs: values['fault-for'] as number,
      downForMs: values['down-for'] as number,
      pauseForMs: values['pause-for'] as number,
      redisUrl: redis,
      postgresUrl: postgres,
      eventsStore,
      mysqlUrl: eventsStore === 'mysql' ? mysqlUrl!.replace(/\/+$/, '') : undefined,
      seed: (values['seed'] as number | undefined) ?? randomSeed(),
      workloads: [...new Set(workloads)] as Workload[],
      eventsPerSecond: values['rate'] as number,
      batchSize: values['batch-size'] as number,
      concurrency: values['concurrency'] as number,
      cartAddsPerSecond: values['cart-rate'] as number,
      counterAddsPerSecond: values['counter-rate'] as number,
      drainTimeoutMs: values['drain-timeout'] as number,
      shards: values['shards'] as number,
      workDir,
      keep: values['keep'] as boolean,
      json: values['json'] as boolean,
      nodeLogLevel: String(values['node-log-level']),
    },
  };
}

/** --mysql names a server, not a database: the run makes its own database there. */
function mysqlProblems(url: string | undefined): string[] {
  if (!url) return [`setting mysql: none given; --events-store mysql needs a server, e.g. --mysql ${DEFAULT_CHAOS_MYSQL_URL}`];
  const u = new URL(url);
  const shown = u.password ? url.replace(`:${u.password}@`, ':***@') : url;
  if (u.protocol !== 'mysql:') return [`setting mysql: got "${shown}"; expected a mysql:// URL like ${DEFAULT_CHAOS_MYSQL_URL}`];
  if (u.pathname.replace(/\/+/g, '') !== '') return [`setting mysql: got "${shown}", which names the database ${u.pathname.replace(/^\/+/, '')}; give the server only (mysql://USER:PASS@HOST:PORT): chaos creates a database troupe_chaos_<run> of its own there and drops it at the end`];
  if (u.search || u.hash) return [`setting mysql: got "${shown}"; options after ? or # are not used; give mysql://USER:PASS@HOST:PORT`];
  return [];
}
