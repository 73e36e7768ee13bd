// `troupe node` child processes for the dashboard tests: ports chosen by the OS and read back from
// what the node prints, a data directory of its own, killed and removed by the test's teardown.

import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const TROUPE = new URL('../../../bin/troupe.js', import.meta.url).pathname;

export interface CliNode {
  child: ChildProcess;
  nodeId: string;
  ports: Record<string, number>;
  ops: string;
}

/** Starts a node (args after `troupe node`) and resolves once it printed every port; killed at teardown. */
export async function startCliNode(t: ExecutionContext, name: string, args: string[]): Promise<CliNode> {
  const dataDir = mkdtempSync(join(tmpdir(), `troupe-dash-${name}-`));
  const child = spawn(process.execPath, [TROUPE, 'node', '--node-name', name, '--host', '127.0.0.1', '--data-dir', dataDir, '--log-level', 'warn', '--ops-port', '0', '--cluster-port', '0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    rmSync(dataDir, { recursive: true, force: true });
  });
  const ports: Record<string, number> = {};
  let nodeId = '';
  const lines = createInterface({ input: child.stderr! });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`troupe node ${name} did not print its ports within 90 s:\n${output.slice(-2000)}`)), 90_000);
    lines.on('line', (line) => {
      output += line + '\n';
      const ready = /^troupe: node (\S+) ready; data in /.exec(line);
      if (ready) nodeId = ready[1]!;
      const port = /^troupe:\s+(\S+)\s+\S+:(\d+)$/.exec(line);
      if (port) ports[port[1]!] = Number(port[2]);
      // The ports follow the ready line; the last one printed is a gateway's, so wait for a quiet moment.
      if (nodeId && ports.ops) {
        clearTimeout(timer);
        setTimeout(resolve, 300);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`troupe node ${name} exited with ${code}:\n${output.slice(-2000)}`));
    });
  });
  return { child, nodeId, ports, ops: `http://127.0.0.1:${ports.ops}` };
}

/** The sum of one metric's samples in Prometheus text (every label set). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

export async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
