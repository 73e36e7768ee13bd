// `troupe recover`: what the operator sees and does after the cluster's Redis lost its data. Shows
// whether the cluster is marked lost, which nodes published what they stored, and which nodes of
// the last ring have not; with --accept, lets the nodes serve again with what was rebuilt.

import { Redis } from 'ioredis';
import { acceptDataLoss, recoveryStatus } from '../runtime/cluster/cluster-incarnation.js';
import { clusterKeys } from '../runtime/cluster/keys.js';
import { ConfigError, type SettingSpec, type SettingValues } from '../runtime/index.js';
import { redactedUrl } from '../runtime/redact.js';

export const recoverSettings: SettingSpec[] = [
  { name: 'redis', kind: 'url', default: 'redis://127.0.0.1:6379', example: 'redis://127.0.0.1:6379', description: "the cluster's Redis" },
  { name: 'cluster', kind: 'string', default: 'troupe', description: 'the cluster name the nodes were given' },
  { name: 'partitions', kind: 'int', min: 1, max: 1 << 20, default: 1024, description: "the cluster's partition count (to count the partitions no node claimed)" },
  { name: 'accept', kind: 'bool', default: false, description: 'serve again with what the nodes published (partitions nobody claimed start empty); without it, only show the status' },
  { name: 'json', kind: 'bool', default: false, description: 'print the status as one JSON object' },
];

export async function runRecover(values: SettingValues, rest: string[]): Promise<number> {
  const cluster = String(values.cluster);
  try {
    clusterKeys(cluster);
  } catch (err) {
    throw new ConfigError(`setting cluster: ${(err as Error).message}`);
  }
  if (rest.length > 0) throw new ConfigError(`unexpected argument "${rest[0]}": troupe recover takes only settings (--accept to act)`);
  const url = String(values.redis);
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1, commandTimeout: 5000 });
  redis.on('error', () => {}); // reported by the calls that fail
  try {
    await redis.connect();
    const partitions = Number(values.partitions);
    const status = await recoveryStatus(redis, cluster, partitions);
    let accepted = false;
    if (values.accept === true) accepted = await acceptDataLoss(redis, cluster);
    if (values.json === true) {
      process.stdout.write(JSON.stringify({ ...status, accepted }) + '\n');
      return 0;
    }
    const out: string[] = [];
    if (status.lost === '') {
      out.push(`cluster "${cluster}" (incarnation ${status.incarnation || 'none yet'}) is not marked lost: nothing to recover`);
    } else {
      out.push(`cluster "${cluster}" is marked lost${status.lostAt ? ` since ${new Date(status.lostAt).toISOString()}` : ''}: ${status.lost}`);
      out.push(`no node serves any partition until this is accepted; meanwhile each node published what it stored of the partitions it served last (the newest tenure per partition wins)`);
      for (const p of status.published) out.push(`  published by ${p.node}: ${p.served} partitions served last, newest for ${p.newest}, ${p.states} states`);
      if (status.published.length === 0) out.push('  no node has published yet: start the nodes that have data directories');
      out.push(`  ${status.claimed} of ${partitions} partitions claimed by some node's snapshots`);
      if (status.missing.length > 0) out.push(`  on the last ring but not published: ${status.missing.join(', ')}: start them (with their data directories) before accepting, or what they held last is lost`);
      if (accepted) out.push('accepted: the nodes take their partitions within a few seconds, from what was published');
      else out.push('run troupe recover --accept to serve again with this (or restore Redis from a backup and restart it instead)');
    }
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  } catch (err) {
    process.stderr.write(`troupe recover: cluster "${cluster}" at ${redactedUrl(url)}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    redis.disconnect();
  }
}

export const recoverCommand = {
  summary: "after the cluster's Redis lost its data: what the nodes rebuilt, and --accept to serve again",
  settings: recoverSettings,
  run: (values: SettingValues, rest: string[]) => runRecover(values, rest),
};
