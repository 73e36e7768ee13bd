// The dashboard of a 3-node cluster (child `troupe node` processes, a Redis cluster name of their
// own): a turn is counted once, on the node that ran it, whichever node sent it; the page shows 3
// nodes and 1,024 partitions as the inspector does; after a SIGKILL the dead node's partitions
// change owner on the page within detection plus hand-off time.

import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, issueCertificate } from '../../../runtime/certs.js';
import { InspectorClient, type InspectorTls } from '../../../runtime/inspector/client.js';
import { partitionOf } from '../../../runtime/partition.js';
import type { ClusterView } from '../../../runtime/dashboard/cluster-watch.js';
import type { NodeReport } from '../../../runtime/dashboard/node-report.js';
import { dropCluster, eventually, newRedis, REDIS_URL, uniqueCluster } from '../../cluster/helpers.js';
import { chromiumMissing, openPage } from './browser.js';
import { getJson, metricSum, startCliNode, type CliNode } from './cli-node.js';

const TROUPE = new URL('../../../bin/troupe.js', import.meta.url).pathname;
const missing = chromiumMissing();
if (missing) console.warn(`dashboard cluster browser test skipped: ${missing}`);

/** A CA and certificates for n1, n2, n3 and the test's own inspector client ("operator"), in a temporary directory. */
async function clusterCerts(t: import('ava').ExecutionContext): Promise<(name: string) => InspectorTls> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-dashboard-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await createCertificateAuthority({ name: 'dashboard test CA' });
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  for (const name of ['n1', 'n2', 'n3', 'operator']) {
    const pair = await issueCertificate({ ca, name });
    writeFileSync(join(dir, `${name}.pem`), pair.cert);
    writeFileSync(join(dir, `${name}-key.pem`), pair.key, { mode: 0o600 });
  }
  return (name) => ({ ca: join(dir, 'ca.pem'), cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) });
}

// Mutual TLS on the cluster port, as a cluster runs by default: each dashboard asks its peers'
// inspectors with its node's own certificate.
let operatorTls: InspectorTls | undefined;

async function cluster3(t: import('ava').ExecutionContext): Promise<CliNode[]> {
  const name = uniqueCluster();
  const certs = await clusterCerts(t);
  operatorTls = certs('operator');
  t.teardown(async () => {
    const redis = newRedis();
    await dropCluster(redis, name);
    redis.disconnect();
  });
  const nodes: CliNode[] = [];
  for (const i of [1, 2, 3]) {
    const tls = certs(`n${i}`);
    nodes.push(await startCliNode(t, `n${i}`, ['--redis', REDIS_URL, '--tls-ca', tls.ca, '--tls-cert', tls.cert, '--tls-key', tls.key, '--inspector', 'full', '--cluster', name, '--gateways', 'who,presence', '--who-port', '0', '--presence-port', '0', '--shards', '1']));
  }
  // Settled: every node sees three members and every partition is served by exactly one of them.
  await eventually(
    async () => {
      const v = await getJson<ClusterView>(`${nodes[0]!.ops}/dashboard/api/cluster`);
      return v.nodes.length === 3 && v.nodes.every((n) => n.status === 'up') && v.owner.every((o) => o >= 0) && v.moving.every((m) => m === 0);
    },
    90_000,
    'three nodes up and every partition served',
  );
  return nodes;
}

const userTurns = (r: NodeReport) => r.types.find((t) => t.type === 'user')?.turns ?? 0;

(missing ? test.skip : test)('a 3-node cluster: turns counted once where they ran, 3 nodes and 1,024 partitions as the inspector sees them, a killed node\'s partitions change owner on the page', async (t) => {
  t.timeout(300_000);
  const nodes = await cluster3(t);
  const [n1, n2, n3] = nodes as [CliNode, CliNode, CliNode];

  // Every message sent through n1; each turn must be counted on the node serving the actor.
  const view = await getJson<ClusterView>(`${n1.ops}/dashboard/api/cluster`);
  const before = await Promise.all(nodes.map((n) => getJson<NodeReport>(`${n.ops}/dashboard/api/node`)));
  const inspector = new InspectorClient(`127.0.0.1:${n1.ports.cluster}`, { timeoutMs: 10_000, tls: operatorTls });
  t.teardown(() => inspector.close());
  const expected = new Map<string, number>(nodes.map((n) => [n.nodeId, 0]));
  const N = 90;
  for (let i = 0; i < N; i++) {
    const id = `user/c${i}`;
    const r = await inspector.send({ id, handler: 'pong', messageJson: JSON.stringify({ status: 2, atMs: Date.now() }), ask: true, askTimeoutMs: 10_000 });
    t.true(r.ok, r.failure?.message);
    const owner = view.nodes[view.owner[partitionOf(id, view.partitions)]!]!.nodeId;
    expected.set(owner, expected.get(owner)! + 1);
  }
  t.true([...expected.values()].every((n) => n > 0), 'the actors are spread over the three nodes');
  const after = await Promise.all(nodes.map((n) => getJson<NodeReport>(`${n.ops}/dashboard/api/node`)));
  for (const [i, n] of nodes.entries()) t.is(userTurns(after[i]!) - userTurns(before[i]!), expected.get(n.nodeId)!, `turns counted on ${n.nodeId}`);
  // The same as each node's /metrics.
  for (const [i, n] of nodes.entries()) {
    const metrics = await (await fetch(`${n.ops}/metrics`)).text();
    t.is(after[i]!.totals.turns, metricSum(metrics, 'troupe_turns_total'));
  }

  const browser = await openPage(`${n1.ops}/dashboard`);
  t.teardown(() => browser.close());
  const { page } = browser;
  await browser.ready();
  t.is(await page.locator('#nodes-table tbody tr[data-node]').count(), 3);
  t.is(await page.locator('#partition-map .cell').count(), 1024);
  // The per-node turn totals on the page, cluster-wide, are the sends (plus nothing else: who and presence were idle).
  await page.locator('[data-type="user"] [data-field="turns"]', { hasText: new RegExp(`^${N}$`) }).waitFor({ timeout: 30_000 });
  // Each node serves on the page what its inspector says it serves.
  for (const n of nodes) {
    const served = (await new InspectorClient(`127.0.0.1:${n.ports.cluster!}`, { tls: operatorTls }).partitions()).states.filter((s) => s === 1).length;
    t.is(await page.locator(`#partition-map .cell[data-owner="${n.nodeId}"]`).count(), served, `partitions of ${n.nodeId}`);
    t.is(await page.locator(`#nodes-table tr[data-node="${n.nodeId}"] [data-serving]`).getAttribute('data-serving'), String(served));
  }
  // Some load for the picture (the README's): presence clients on every node, then a few seconds of charts.
  for (const n of nodes) {
    const load = spawn(process.execPath, [TROUPE, 'presence-client', '--gateway', `127.0.0.1:${n.ports['presence.grpc']!}`, '--clients', '120', '--id-prefix', `${n.nodeId.slice(0, 2)}-`, '--ramp', '3000'], { stdio: 'ignore' });
    t.teardown(async () => {
      if (load.exitCode === null && load.signalCode === null) {
        load.kill('SIGKILL');
        await once(load, 'exit');
      }
    });
  }
  await eventually(
    async () => {
      const v = await getJson<ClusterView>(`${n1.ops}/dashboard/api/cluster`);
      return (v.services.find((s) => s.name === 'presence')?.figures.find((f) => f.name === 'streams open')?.value ?? 0) >= 300;
    },
    120_000,
    'the presence clients connected',
  );
  await page.waitForTimeout(10_000);
  await browser.screenshot('cluster');

  const killedAt = Date.now();
  n3.child.kill('SIGKILL');
  await page.waitForTimeout(1500);
  await browser.screenshot('cluster-node-killed');
  // Detection (2 s) plus the lease TTL (2 s) plus the page's second: generous for a loaded machine.
  await eventually(
    async () => (await page.locator(`#partition-map .cell[data-owner="${n1.nodeId}"], #partition-map .cell[data-owner="${n2.nodeId}"]`).count()) === 1024,
    60_000,
    'every partition owned by n1 or n2 on the page',
  );
  const tookMs = Date.now() - killedAt;
  t.log(`partitions of the killed node shown with new owners ${tookMs} ms after the SIGKILL`);
  t.is(await page.locator(`#partition-map .cell[data-owner="${n3.nodeId}"]`).count(), 0);
  await page.locator('#event-log li[data-kind="lease-loss"]').first().waitFor({ timeout: 30_000 });
  await page.locator('#event-log li[data-kind="death"]').first().waitFor({ timeout: 30_000 });
  await eventually(async () => (await page.locator('#nodes-table tbody tr[data-node]').count()) === 2, 30_000, 'the dead node gone from the table');
  await browser.screenshot('cluster-after-kill');
  void n2;
  t.deepEqual(browser.errors, []);
});
