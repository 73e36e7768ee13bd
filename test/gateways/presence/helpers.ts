// A Troupe node running the presence gateway, for the node-backed tests, the SIGKILL fixture and
// the benchmark: the node's shards load the user actor, the gateway listens on a free port.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { rootLogger, startNode, type ClusterOptions, type RunningGateway, type TroupeNode } from '../../../runtime/index.js';
import { createPresenceGateway } from '../../../gateways/presence/index.js';
import { waitFor } from '../../common.js';

const made: string[] = [];

/** A fresh data directory, removed when the process exits. */
export function tempDir(prefix = 'troupe-presence-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (made.push(dir) === 1) process.once('exit', () => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
  return dir;
}

export interface PresenceNode {
  node: TroupeNode;
  gateway: RunningGateway;
  address: string;
  stop(): Promise<void>;
}

export async function startPresenceNode(options: {
  dataDir: string;
  clock?: () => number;
  shards?: number;
  settings?: Record<string, unknown>;
  cluster?: ClusterOptions;
}): Promise<PresenceNode> {
  const presence = createPresenceGateway({ clock: options.clock });
  const settings: Record<string, unknown> = { 'presence-port': 0, ...options.settings };
  const node = await startNode({ dataDir: options.dataDir, shards: options.shards ?? 2, actorModules: presence.actorModules, settings, cluster: options.cluster });
  const gateway = await presence.start({
    system: node,
    membership: node.membership,
    settings: settings as never,
    metrics: new Registry(),
    log: rootLogger(),
    dataDir: node.dataDir,
    host: '127.0.0.1',
  });
  return {
    node,
    gateway,
    address: `127.0.0.1:${gateway.ports.grpc}`,
    async stop() {
      await gateway.stop();
      await node.stop();
    },
  };
}

export function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  return waitFor(cond, timeoutMs, what);
}
