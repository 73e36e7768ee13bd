// The WHO / WHERE / WHY gateway: its settings and how it starts on a node (contract in README.md).

import { readFileSync } from 'node:fs';
import type { Gateway, GatewayHost, RunningGateway, SettingSpec } from '../../runtime/index.js';
import { CONNECTIONS_GAUGE, WhoServer } from './server.js';

export const whoSettings: readonly SettingSpec[] = [
  { name: 'who-port', kind: 'port', default: 4242, description: 'TCP port of the WHO / WHERE / WHY line protocol (0: any free port)' },
  {
    name: 'who-idle-timeout',
    kind: 'duration',
    default: 300_000,
    description: 'close a WHO connection that sent nothing for this long, like 30s or 5m (0: never)',
  },
  {
    name: 'who-max-connections',
    kind: 'int',
    default: 10_000,
    min: 1,
    max: 10_000_000,
    description: 'WHO connections one node holds at once; the next client is told so and closed (keep below the file limit, ulimit -n)',
  },
  {
    name: 'who-max-line',
    kind: 'int',
    default: 1024,
    min: 8,
    max: 1_048_576,
    description: 'longest WHO command line in bytes, terminator excluded; a longer line gets an error and is dropped',
  },
  {
    name: 'who-max-errors',
    kind: 'int',
    default: 16,
    min: 1,
    max: 1_000_000,
    description: 'error lines in a row (unknown commands, over-long lines) after which a WHO client is told so and closed',
  },
];

/** WHERE must stay one line whatever the node id holds. */
function printableNodeId(id: string): string {
  const clean = id.replace(/[^\x21-\x7e]/g, '_');
  return clean || 'unknown-node';
}

/** This process's open-file limit, where the OS tells it (Linux); undefined elsewhere. */
function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

// Descriptors the node needs besides WHO clients: its other gateways, Redis, SQLite, workers.
const OTHER_DESCRIPTORS = 256;

export const whoGateway: Gateway = {
  name: 'who',
  actorModules: [],
  settings: whoSettings,
  async start(host: GatewayHost): Promise<RunningGateway> {
    const log = host.log;
    const maxConnections = host.settings['who-max-connections'] as number;
    const files = openFileLimit();
    if (files !== undefined && maxConnections > files - OTHER_DESCRIPTORS) {
      // Past the file limit accept() fails and clients are dropped without the polite ERR line.
      log.warn(
        { maxConnections, openFileLimit: files },
        `who-max-connections ${maxConnections} is above what the open-file limit ${files} leaves for clients; raise ulimit -n or lower who-max-connections to ${Math.max(1, files - OTHER_DESCRIPTORS)}`,
      );
    }
    const server = new WhoServer({
      host: host.host,
      port: host.settings['who-port'] as number,
      nodeId: printableNodeId(host.system.nodeId),
      membership: host.membership,
      idleTimeoutMs: host.settings['who-idle-timeout'] as number,
      maxConnections,
      maxLineBytes: host.settings['who-max-line'] as number,
      maxErrorsInRow: host.settings['who-max-errors'] as number,
      log,
      metrics: host.metrics,
    });
    const port = await server.listen();
    log.info({ port }, 'who listening');
    return {
      ports: { who: port },
      async panel() {
        return [
          { name: 'connections here', value: server.connectionCount, kind: 'gauge' },
          { name: 'connections cluster-wide', value: await host.membership.sumGauge(CONNECTIONS_GAUGE), kind: 'gauge', scope: 'cluster' },
        ];
      },
      async notReady() {
        return server.listening ? undefined : 'the WHO port is not listening';
      },
      stop: () => server.stop(),
    };
  },
};

export default whoGateway;
export { WhoServer, CONNECTIONS_GAUGE } from './server.js';
