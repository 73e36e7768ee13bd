// Shared setup for runtime tests: a node on a fresh temporary data directory.

import { startNode, type NodeOptions, type TroupeNode } from '../../runtime/index.js';
import { pollUntil, tempDir } from '../common.js';

export const COUNTER = new URL('./fixtures/counter.js', import.meta.url).href;
export const PROBE = new URL('./fixtures/probe.js', import.meta.url).href;
export const TICKER = new URL('./fixtures/ticker.js', import.meta.url).href;

export { tempDir };

export async function testNode(options: Partial<NodeOptions> = {}): Promise<TroupeNode> {
  return startNode({ dataDir: tempDir(), shards: 2, askTimeoutMs: 30_000, actorModules: [COUNTER, PROBE, TICKER], ...options });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` is true or `ms` (stretched on a loaded machine, see test/common.ts) passed. */
export function eventually(check: () => Promise<boolean> | boolean, ms = 5000, every = 20): Promise<boolean> {
  return pollUntil(check, ms, every);
}
