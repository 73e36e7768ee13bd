// The services on a real three-node cluster: `troupe node --redis` processes (the CLI itself),
// WHO summing clients over every node and dropping a killed node's, and the presence count the
// same from every node's StatusReader whichever gateway the clients use.

import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fetchOnlineUsers, gatewayConnection, PresenceClient } from '../../gateways/presence/client.js';
import { dropCluster, newRedis, REDIS_URL, uniqueCluster } from './helpers.js';
import { waitFor } from './test-cluster.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;

interface CliNode {
  child: ChildProcess;
  ports: Record<string, number>;
}

async function startCliNode(cluster: string, name: string): Promise<CliNode> {
  const child = spawn(
    process.execPath,
    [TROUPE, 'node', '--node-name', name, '--redis', REDIS_URL, '--cluster', cluster, '--gateways', 'who,presence', '--host', '127.0.0.1',
      '--who-port', '0', '--presence-port', '0', '--cluster-port', '0', '--ops-port', '0', '--shards', '1',
      '--data-dir', mkdtempSync(join(tmpdir(), `troupe-cli-${name}-`)), '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const ports: Record<string, number> = {};
  const lines = createInterface({ input: child.stderr! });
  await new Promise<void>((resolve, reject) => {
    let ready = false;
    lines.on('line', (line) => {
      const port = /^troupe:\s+(\S+)\s+\S+:(\d+)$/.exec(line);
      if (port) ports[port[1]!] = Number(port[2]);
      if (line.includes(' ready; data in ')) ready = true;
      if (ready && ports['who.who'] && ports['presence.grpc']) resolve();
    });
    child.once('exit', (code) => reject(new Error(`troupe node ${name} exited with ${code}`)));
  });
  return { child, ports };
}

function who(port: number, via?: Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = via ?? connect(port, '127.0.0.1');
    const onData = (data: Buffer) => {
      socket.off('data', onData);
      socket.off('error', reject);
      if (!via) socket.end();
      const n = Number(data.toString().trim());
      if (Number.isInteger(n)) resolve(n);
      else reject(new Error(`WHO answered ${JSON.stringify(data.toString())}`));
    };
    socket.on('data', onData);
    socket.on('error', reject);
    socket.write('WHO\n');
  });
}

async function cluster3(t: import('ava').ExecutionContext): Promise<CliNode[]> {
  const name = uniqueCluster();
  const nodes: CliNode[] = [];
  t.teardown(async () => {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    const redis = newRedis();
    await dropCluster(redis, name);
    redis.disconnect();
  });
  for (const i of [1, 2, 3]) nodes.push(await startCliNode(name, `n${i}`));
  return nodes;
}

test('WHO counts clients on every node, the same from each, and drops a killed node within the detection time', async (t) => {
  const nodes = await cluster3(t);
  const sockets: Socket[][] = [];
  for (const [i, node] of nodes.entries()) {
    const held = Array.from({ length: i + 2 }, () => connect(node.ports['who.who']!, '127.0.0.1'));
    await Promise.all(held.map((s) => once(s, 'connect')));
    sockets.push(held);
  }
  t.teardown(() => sockets.flat().forEach((s) => s.destroy()));
  // 2 + 3 + 4 held connections, and the WHO asker's own, on each node.
  for (const node of nodes) t.true(await waitFor(async () => (await who(node.ports['who.who']!, sockets[0]![0])) === 9, 3000), 'the same WHO from every node');
  const killedAt = Date.now();
  nodes[2]!.child.kill('SIGKILL');
  t.true(await waitFor(async () => (await who(nodes[0]!.ports['who.who']!, sockets[0]![0])) === 5, 5000, 100), 'the killed node no longer counts');
  t.true(Date.now() - killedAt <= 4000, `dropped after ${Date.now() - killedAt} ms`);
});

test('presence clients spread over three gateways are counted once, the same from every node', async (t) => {
  const nodes = await cluster3(t);
  const clients: PresenceClient[] = [];
  const connections = nodes.map((n) => gatewayConnection(`127.0.0.1:${n.ports['presence.grpc']}`));
  t.teardown(() => {
    for (const c of clients) c.stop();
    for (const c of connections) c.close();
  });
  for (let i = 0; i < 30; i++) {
    const client = new PresenceClient({ id: `user-${i}`, connection: connections[i % 3]! });
    client.start();
    clients.push(client);
  }
  for (const node of nodes) {
    const address = `127.0.0.1:${node.ports['presence.grpc']}`;
    t.true(await waitFor(async () => (await fetchOnlineUsers(address)) === 30, 8000, 100), `count from ${address}`);
  }
});
