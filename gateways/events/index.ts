// The events gateway: its settings and how it plugs the event pipeline into a node (the user
// actors through the node's actor system).

import { availableParallelism } from 'node:os';
import type { ActivityEvent, ActivitySummary } from '../../actors/user-activity.js';
import { ConfigError, redisEndpointFrom, type ActorSystem, type Gateway, type SettingSpec, type SettingValues } from '../../runtime/index.js';
import { publicTlsFrom, publicTlsSettings } from '../public-tls.js';
import { readSecretFile } from '../secret-file.js';
import type { UserActivity } from './batch-processor.js';
import { mysqlConnection } from './mysql-store.js';
import { DEFAULT_MYSQL_URL, EVENT_STORE_KINDS } from './open-store.js';
import { startEventsPipeline, type EventsPipelineOptions } from './pipeline.js';
import type { EventStoreKind } from './store.js';

const USER_ACTOR = new URL('../../actors/user.js', import.meta.url).href;

export const eventsSettings: SettingSpec[] = [
  { name: 'events-port', kind: 'port', default: 8080, description: 'events HTTP port (POST /events, /events/batch, GET /metrics, /health)' },
  { name: 'redis', kind: 'url', default: undefined, example: 'redis://127.0.0.1:6379', description: 'Redis URL; the cluster ring, and the BullMQ event-batch queue (embedded: a SQLite queue in the data dir)' },
  { name: 'postgres', kind: 'url', default: undefined, example: 'postgres://postgres@127.0.0.1:5432/test', description: 'PostgreSQL URL for the domain tables such as processed_events (embedded: SQLite in the data dir)' },
  { name: 'events-queue-name', kind: 'string', default: 'troupe-events', description: 'BullMQ queue name of event batches, shared by the nodes of a cluster' },
  {
    name: 'events-store',
    kind: 'enum',
    choices: EVENT_STORE_KINDS,
    default: undefined,
    description: 'where processed_events and dead_letter_events live: sqlite (the data dir), postgres (--postgres) or mysql (--mysql); default postgres when --postgres is given, else sqlite',
  },
  { name: 'mysql', kind: 'url', default: DEFAULT_MYSQL_URL, example: DEFAULT_MYSQL_URL, description: 'MySQL 8 or MariaDB 10.6+ URL of the events store with --events-store mysql; the database must exist' },
  { name: 'events-pg-schema', kind: 'string', default: 'public', description: 'PostgreSQL schema of processed_events and dead_letter_events' },
  { name: 'events-queue-workers', kind: 'int', default: 32, min: 1, max: 256, description: 'event batches processed at once by this node' },
  { name: 'events-pool-threads', kind: 'int', default: Math.max(1, Math.floor(availableParallelism() / 2)), min: 1, max: 64, description: 'threads of the validation and enrichment pool (piscina)' },
  { name: 'events-max-attempts', kind: 'int', default: 5, min: 1, max: 100, description: 'deliveries of a batch before its events become dead letters' },
  { name: 'events-retry-backoff', kind: 'duration', default: 200, min: 1, description: 'wait before the first retry of a failed batch; doubles with every retry' },
  { name: 'events-max-body-bytes', kind: 'int', default: 1_048_576, min: 1024, max: 64 * 1_048_576, description: 'largest request body accepted (413 beyond)' },
  { name: 'events-max-pending', kind: 'int', default: 2000, min: 1, description: 'requests being checked or waiting for the queue at once before new ones get 503' },
  { name: 'events-headers-timeout', kind: 'duration', default: 10_000, min: 100, description: 'how long a client may take to send its request headers; then the connection is cut' },
  { name: 'events-request-timeout', kind: 'duration', default: 30_000, min: 100, description: 'how long a client may take to send a whole request (at least events-headers-timeout); then 408' },
  { name: 'events-max-connections', kind: 'int', default: 4096, min: 1, max: 1_000_000, description: 'open connections at most on the events port; one more is closed at once' },
  { name: 'events-max-queue-depth', kind: 'int', default: 200_000, min: 100, description: 'events queued (cluster-wide with BullMQ) beyond which new requests get 503' },
  { name: 'events-drain-timeout', kind: 'duration', default: 30_000, description: 'at stop, how long to keep processing queued batches before leaving them for the next start' },
  { name: 'events-lock-duration', kind: 'duration', default: 30_000, min: 1000, description: 'BullMQ job lock; a batch held by a crashed node is redelivered after about twice this' },
  {
    name: 'events-summary-token-file',
    kind: 'string',
    default: undefined,
    description:
      'file holding a token (at least 32 bytes) that GET /users/<id>/summary needs as `authorization: Bearer <token>`; without it that path is not served (404)',
  },
  ...publicTlsSettings('events', 'the events port (HTTPS)'),
  { name: 'events-ask-timeout', kind: 'duration', default: 10_000, min: 100, description: "how long a batch waits for a user actor to apply its events; past it, that user's events are handed off to a retry of their own" },
];

/** The user whose actor /health reads; reading changes nothing, so a real user of that id is harmless. */
const HEALTH_PROBE_USER = '~events-health';
const HEALTH_PROBE_TIMEOUT_MS = 1800;

/** The user actors through the node's actor system. */
export function userActivityOf(system: ActorSystem, askTimeoutMs: number): UserActivity {
  return {
    async record(userId: string, events: ActivityEvent[]) {
      await system.ref('user', userId).ask('recordEvents', { events }, { timeoutMs: askTimeoutMs });
    },
    async summary(userId: string) {
      return (await system.ref('user', userId).ask('activitySummary', undefined, { timeoutMs: askTimeoutMs })) as ActivitySummary;
    },
    async ping() {
      // A read of one user actor, with a short deadline: it answers only when its partition is served.
      await system.ref('user', HEALTH_PROBE_USER).ask('activitySummary', undefined, { timeoutMs: Math.min(askTimeoutMs, HEALTH_PROBE_TIMEOUT_MS) });
    },
  };
}

/** The store settings that only make sense together; throws ConfigError naming the fix. */
function checkStoreSettings(settings: SettingValues): void {
  const store = settings['events-store'] as EventStoreKind | undefined;
  if (store === 'postgres' && !settings['postgres']) {
    throw new ConfigError('setting events-store: postgres needs --postgres URL (e.g. postgres://postgres@127.0.0.1:5432/test); or choose --events-store sqlite|mysql');
  }
  if (store === 'mysql') {
    try {
      mysqlConnection(settings['mysql'] as string);
    } catch (err) {
      throw new ConfigError(`setting mysql: ${(err as Error).message}`);
    }
  }
}

/** Pipeline options from the node's settings (values already validated by the settings engine). */
export function pipelineOptionsFrom(settings: SettingValues, rest: Pick<EventsPipelineOptions, 'host' | 'dataDir' | 'activity' | 'log'>): EventsPipelineOptions {
  const num = (name: string) => settings[name] as number;
  checkStoreSettings(settings);
  const tokenFile = settings['events-summary-token-file'];
  const summary = typeof tokenFile === 'string' && tokenFile !== '' ? readSecretFile('events-summary-token-file', tokenFile) : undefined;
  if (summary?.warning) rest.log.warn(`events: ${summary.warning}`);
  const tls = publicTlsFrom(settings, 'events');
  if (tls?.warning) rest.log.warn(`events: ${tls.warning}`);
  if (num('events-request-timeout') < num('events-headers-timeout')) {
    throw new ConfigError(
      `setting events-request-timeout: got ${num('events-request-timeout')} ms, shorter than events-headers-timeout ${num('events-headers-timeout')} ms; give a request timeout at least as long as the headers timeout`,
    );
  }
  return {
    ...rest,
    port: num('events-port'),
    redis: redisEndpointFrom(settings),
    postgresUrl: settings['postgres'] as string | undefined,
    queueName: settings['events-queue-name'] as string,
    pgSchema: settings['events-pg-schema'] as string,
    eventsStore: settings['events-store'] as EventStoreKind | undefined,
    mysqlUrl: settings['mysql'] as string,
    queueWorkers: num('events-queue-workers'),
    poolThreads: num('events-pool-threads'),
    retry: { attempts: num('events-max-attempts'), backoffMs: num('events-retry-backoff') },
    lockDurationMs: num('events-lock-duration'),
    maxBodyBytes: num('events-max-body-bytes'),
    maxPendingEnqueues: num('events-max-pending'),
    maxQueueDepth: num('events-max-queue-depth'),
    headersTimeoutMs: num('events-headers-timeout'),
    requestTimeoutMs: num('events-request-timeout'),
    maxConnections: num('events-max-connections'),
    ...(summary ? { summaryToken: summary.secret } : {}),
    ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    drainTimeoutMs: num('events-drain-timeout'),
    askTimeoutMs: num('events-ask-timeout'),
  };
}

export const eventsGateway: Gateway = {
  name: 'events',
  actorModules: [USER_ACTOR],
  settings: eventsSettings,
  async start(host) {
    const log = host.log;
    const pipeline = await startEventsPipeline(
      pipelineOptionsFrom(host.settings, {
        host: host.host,
        dataDir: host.dataDir,
        activity: userActivityOf(host.system, host.settings['events-ask-timeout'] as number),
        log,
      }),
    );
    return {
      ports: { http: pipeline.port },
      async panel() {
        // The eight figures of the service's own GET /metrics, as that endpoint computes them.
        const m = await pipeline.metrics();
        return [
          { name: 'accepted', value: m.events_received, kind: 'count' },
          { name: 'stored', value: m.events_processed, kind: 'count' },
          { name: 'dead letters', value: m.events_failed, kind: 'count' },
          { name: 'queue depth', value: m.current_queue_depth, kind: 'gauge' },
          { name: 'active workers', value: m.active_workers, kind: 'gauge' },
          { name: 'average latency', value: m.average_processing_latency_ms, kind: 'gauge', unit: 'ms' },
          { name: 'events per second', value: m.events_per_second, kind: 'gauge' },
          { name: 'uptime', value: m.uptime_seconds, kind: 'gauge', unit: 's' },
        ];
      },
      async notReady() {
        // Not the actors: while user actors do not answer, the node still takes events durably (their
        // counts follow by hand-off), and a node restarting into a cluster whose partitions are
        // still moving must not wait for them to be ready. /health reports them.
        // Nor an ask to one per /readyz poll: it would be a user turn every few seconds for nothing.
        const h = await pipeline.health({ actors: false });
        const failing = Object.entries(h.checks).filter(([, v]) => v !== 'ok');
        if (failing.length === 0) return undefined;
        return `events: ${failing.map(([k, v]) => `${k}: ${v}`).join('; ')}`;
      },
      stop: () => pipeline.stop(),
    };
  },
};

export default eventsGateway;
