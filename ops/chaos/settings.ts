// The settings of `troupe chaos`, and the checks between them that one setting alone cannot make,
// all reported together with what to do, as every troupe command does at the door.

import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { SettingSpec, SettingValues } from '../../runtime/settings.js';

export type Workload = 'events' | 'carts';

export const CHAOS_SETTINGS: SettingSpec[] = [
  { name: 'nodes', kind: 'int', min: 2, max: 9, default: 3, description: 'troupe node processes in the cluster (at least 2: the load needs a node while another is down)' },
  { name: 'duration', kind: 'duration', min: 5000, default: 60_000, description: 'how long the load and the faults run (then the pipeline drains and the stores are checked)' },
  { name: 'kill-every', kind: 'duration', default: undefined, description: 'SIGKILL a random node this often and restart it on its data dir (0: no kills; default 10s, or a third of --duration when shorter)' },
  { name: 'pause-every', kind: 'duration', default: undefined, description: 'SIGSTOP a random node this often, SIGCONT it after --pause-for (0: no pauses; default 15s, or half of --duration when shorter)' },
  { name: 'stop-every', kind: 'duration', default: 0, description: 'SIGTERM a random node this often (graceful leave) and start it again (0: none)' },
  { name: 'down-for', kind: 'duration', default: 1000, description: 'how long a killed or stopped node stays down before it is started again' },
  { name: 'pause-for', kind: 'duration', min: 100, default: 5000, description: 'how long a paused node stays stopped; past 2 s it is declared dead and its leases and job locks lapse' },
  { name: 'redis', kind: 'url', default: undefined, description: 'Redis URL (required): the cluster and the event queue; chaos uses keys of its own and deletes them' },
  { name: 'postgres', kind: 'url', default: undefined, description: 'PostgreSQL URL (required): the stores; chaos works in a schema of its own and drops it' },
  { name: 'seed', kind: 'int', min: 0, max: 2 ** 31 - 1, default: undefined, description: 'seed of the fault plan (default: random, printed so a run can be repeated)' },
  { name: 'workloads', kind: 'list', choices: ['events', 'carts'], default: ['events', 'carts'], description: 'load to run: events (POST /events/batch) and carts (gRPC Cart/AddItem)' },
  { name: 'rate', kind: 'int', min: 0, max: 1_000_000, default: 2000, description: 'events per second offered to the cluster (0: as fast as the nodes answer)' },
  { name: 'batch-size', kind: 'int', min: 1, max: 100, default: 20, description: 'events per POST /events/batch' },
  { name: 'concurrency', kind: 'int', min: 1, max: 256, default: 16, description: 'event batch requests in flight at once' },
  { name: 'cart-rate', kind: 'int', min: 0, max: 100_000, default: 50, description: 'Cart/AddItem calls per second (0: as fast as the nodes answer); 4 in flight' },
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
  killEveryMs: number;
  pauseEveryMs: number;
  stopEveryMs: number;
  downForMs: number;
  pauseForMs: number;
  redisUrl: string;
  postgresUrl: string;
  seed: number;
  workloads: Workload[];
  eventsPerSecond: number;
  batchSize: number;
  concurrency: number;
  cartAddsPerSecond: number;
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
  if (!redis) problems.push('setting redis: missing; chaos needs a Redis for the cluster and its event queue: give --redis redis://127.0.0.1:6379 (or TROUPE_REDIS); chaos touches only keys of its own');
  else if (!/^rediss?:$/.test(new URL(redis).protocol)) problems.push(`setting redis: got "${redis}"; expected a redis:// or rediss:// URL`);
  if (!postgres) problems.push('setting postgres: missing; chaos needs PostgreSQL to check what was stored: give --postgres postgres://USER@HOST:5432/DB (or TROUPE_POSTGRES); chaos works in a schema of its own');
  else if (!/^postgres(ql)?:$/.test(new URL(postgres).protocol)) problems.push(`setting postgres: got "${postgres}"; expected a postgres:// or postgresql:// URL`);

  const duration = values['duration'] as number;
  // Unset intervals fit the duration; intervals given are checked against it.
  const every: Record<string, number> = {
    'kill-every': (values['kill-every'] as number | undefined) ?? Math.min(10_000, Math.floor(duration / 3)),
    'pause-every': (values['pause-every'] as number | undefined) ?? Math.min(15_000, Math.floor(duration / 2)),
    'stop-every': values['stop-every'] as number,
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
  if (workloads.length === 0) problems.push('setting workloads: empty; expected events, carts or both');
  const workDir = String(values['work-dir']);
  if (!existsSync(workDir) || !statSync(workDir).isDirectory()) problems.push(`setting work-dir: "${workDir}" is not a directory; create it or choose another`);

  if (problems.length) return { problems };
  return {
    problems,
    options: {
      nodes: values['nodes'] as number,
      durationMs: duration,
      killEveryMs: every['kill-every']!,
      pauseEveryMs: every['pause-every']!,
      stopEveryMs: every['stop-every']!,
      downForMs: values['down-for'] as number,
      pauseForMs: values['pause-for'] as number,
      redisUrl: redis!,
      postgresUrl: postgres!,
      seed: (values['seed'] as number | undefined) ?? randomSeed(),
      workloads: [...new Set(workloads)] as Workload[],
      eventsPerSecond: values['rate'] as number,
      batchSize: values['batch-size'] as number,
      concurrency: values['concurrency'] as number,
      cartAddsPerSecond: values['cart-rate'] as number,
      drainTimeoutMs: values['drain-timeout'] as number,
      shards: values['shards'] as number,
      workDir,
      keep: values['keep'] as boolean,
      json: values['json'] as boolean,
      nodeLogLevel: String(values['node-log-level']),
    },
  };
}
