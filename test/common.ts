// What every test file shares: one way to wait for a condition, with deadlines that stretch on a
// loaded machine (a deadline here is when a test gives up on something that should happen, never a
// claim about speed: CI shares 2 cores with whatever runs beside it), and temporary directories
// that go when the test process ends, whatever its tests did.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

const madeDirs: string[] = [];

/**
 * A new directory under the system's temporary directory, removed when this process exits (ava
 * runs each test file in a process of its own), so a failed test leaves nothing in /tmp either.
 * Whatever used it (a node, a child process) must be stopped by then: tests stop theirs in teardowns.
 */
export function tempDir(prefix = 'troupe-test-'): string {
  const dir = mkdtempSync(join(os.tmpdir(), prefix));
  if (madeDirs.push(dir) === 1) {
    process.once('exit', () => {
      for (const d of madeDirs) rmSync(d, { recursive: true, force: true, maxRetries: 2 });
    });
  }
  return dir;
}

/**
 * How much longer than its nominal deadline a wait may take: TROUPE_TEST_SLACK when set, else 3, or
 * more when the machine's 1-minute load is above its core count (a busy loop beside the suite).
 */
export function slack(): number {
  const fromEnv = Number(process.env.TROUPE_TEST_SLACK);
  if (Number.isFinite(fromEnv) && fromEnv >= 1) return fromEnv;
  const busy = os.loadavg()[0]! / Math.max(1, os.availableParallelism());
  return Math.max(3, Math.min(10, Math.ceil(busy * 3)));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it holds (true) or `timeoutMs` times the slack passed (false). */
export async function pollUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs * slack();
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/** Polls `check` until it holds; throws naming `what` when it did not within `timeoutMs` times the slack. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 20): Promise<void> {
  const started = Date.now();
  if (!(await pollUntil(check, timeoutMs, everyMs))) {
    throw new Error(`${what} did not hold within ${Date.now() - started} ms (nominal ${timeoutMs} ms, slack ${slack()}x)`);
  }
}
