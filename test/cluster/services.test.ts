// The services on a real three-node cluster: `troupe node --redis` processes (the CLI itself),
// WHO summing clients over every node and dropping a killed node's, and the presence count the
// same from every node's StatusReader whichever gateway the clients use, kept whole when a node is
// SIGKILLed (its users come back from the partition changelogs), and carts on one
// PostgreSQL schema: AddItem from every node to one cart adds up, and an item's new price shows in
// carts on every node as soon as Item/Update returns; and a traced AddItem's trace crosses from the
// gateway's node to the node whose shard holds the cart.

import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { signToken } from '../../gateways/carts/auth.js';
import { serviceOf } from '../../gateways/carts/protos.js';
import { dropSchema, PG_URL } from '../gateways/carts/harness.js';
import { fetchOnlineUsers, gatewayConnection, PresenceClient } from '../../gateways/presence/client.js';
import { dropCluster, newRedis, REDIS_URL, uniqueCluster } from './helpers.js';
import { waitFor } from './test-cluster.js';
import { OtlpReceiver } from '../runtime/otlp-receiver.js';
import { tempDir } from '../common.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;

interface CliNode {
  child: ChildProcess;
  ports: Record<string, number>;
  dataDir: string;
}

/** The port each gateway prints (`troupe: <gateway>.<port name> host:port`) that startup waits for. */
const PORT_NAMES: Record<string, string> = { who: 'who.who', presence: 'presence.grpc', carts: 'carts.grpc' };

async function startCliNode(cluster: string, name: string, gateways = ['who', 'presence'], extra: string[] = []): Promise<CliNode> {
  const dataDir = tempDir(`troupe-cli-${name}-`);
  const child = spawn(
    process.execPath,
    [TROUPE, 'node', '--node-name', name, '--redis', REDIS_URL, '--cluster', cluster, '--gateways', gateways.join(','), '--host', '127.0.0.1',
      ...gateways.flatMap((g) => [`--${g}-port`, '0']), '--cluster-port', '0', '--ops-port', '0', '--shards', '1',
      '--data-dir', dataDir, '--log-level', 'warn', '--insecure-cluster', ...extra],
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
      if (ready && gateways.every((g) => ports[PORT_NAMES[g]!])) resolve();
    });
    child.once('exit', (code) => reject(new Error(`troupe node ${name} exited with ${code}`)));
  });
  return { child, ports, dataDir };
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

async function cluster3(t: import('ava').ExecutionContext, gateways?: string[], extra?: string[]): Promise<CliNode[]> {
  const name = uniqueCluster();
  const nodes: CliNode[] = [];
  t.teardown(async () => {
    for (const n of nodes) {
      if (n.child.exitCode === null && n.child.signalCode === null) {
        n.child.kill('SIGKILL');
        await once(n.child, 'exit');
      }
      rmSync(n.dataDir, { recursive: true, force: true });
    }
    const redis = newRedis();
    await dropCluster(redis, name);
    redis.disconnect();
  });
  for (const i of [1, 2, 3]) nodes.push(await startCliNode(name, `n${i}`, gateways, extra));
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

/** `count` presence clients `user-<i>`, spread in turn over the gateways of `via`; stopped at teardown. */
function presenceClients(t: import('ava').ExecutionContext, via: CliNode[], count: number): PresenceClient[] {
  const connections = via.map((n) => gatewayConnection(`127.0.0.1:${n.ports['presence.grpc']}`));
  const clients = Array.from({ length: count }, (_, i) => new PresenceClient({ id: `user-${i}`, connection: connections[i % via.length]! }));
  t.teardown(() => {
    for (const c of clients) c.stop();
    for (const c of connections) c.close();
  });
  for (const c of clients) c.start();
  return clients;
}

test('presence clients spread over three gateways are counted once, the same from every node', async (t) => {
  const nodes = await cluster3(t);
  presenceClients(t, nodes, 30);
  for (const node of nodes) {
    const address = `127.0.0.1:${node.ports['presence.grpc']}`;
    t.true(await waitFor(async () => (await fetchOnlineUsers(address)) === 30, 8000, 100), `count from ${address}`);
  }
});

test('users whose actors lived on a SIGKILLed node still count on the survivors (partition changelogs)', async (t) => {
  const nodes = await cluster3(t);
  // Clients talk to the first two gateways only, so the kill cuts no client off; their user actors
  // live on all three nodes.
  const clients = presenceClients(t, nodes.slice(0, 2), 40);
  const counted = (node: CliNode) => fetchOnlineUsers(`127.0.0.1:${node.ports['presence.grpc']}`);
  for (const node of nodes) t.true(await waitFor(async () => (await counted(node)) === 40, 8000, 100), 'all 40 counted');
  // No more reports from here on: what counts is what was stored (online within 3 minutes).
  for (const c of clients) c.stop();
  nodes[2]!.child.kill('SIGKILL');
  await once(nodes[2]!.child, 'exit');
  // Once the survivors have taken over the dead node's partitions, its users count again.
  for (const node of nodes.slice(0, 2)) t.true(await waitFor(async () => (await counted(node)) === 40, 12_000, 200), `40 counted after the kill, got ${await counted(node)}`);
});

test('carts on three nodes share one schema: AddItem from every node adds up, a new price shows on every node at once', async (t) => {
  const schema = `carts_cluster_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const secret = 'cluster-test-secret-0123456789abcdef';
  t.teardown(() => dropSchema(schema));
  const nodes = await cluster3(t, ['carts'], ['--postgres', PG_URL, '--carts-schema', schema, '--carts-secret', secret]);
  const user = randomUUID();
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${signToken(secret, user, { roles: ['admin'], ttlSeconds: 600 })}`);
  const clients = nodes.map((n) => ({
    cart: new (serviceOf('cart', 'Cart'))(`127.0.0.1:${n.ports['carts.grpc']}`, grpc.credentials.createInsecure()),
    item: new (serviceOf('item', 'Item'))(`127.0.0.1:${n.ports['carts.grpc']}`, grpc.credentials.createInsecure()),
  }));
  t.teardown(() => clients.forEach((c) => (c.cart.close(), c.item.close())));
  const call = (client: grpc.Client, method: string, req: unknown): Promise<any> =>
    new Promise((resolve, reject) => (client as any)[method](req, md, { deadline: Date.now() + 20_000 }, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))));

  const item = await call(clients[0]!.item, 'Create', { name: 'Tea', price: 2.5 });
  // Three carts, so that their actors most likely live on different nodes.
  const carts = [randomUUID(), randomUUID(), randomUUID()];
  await Promise.all(
    carts.flatMap((cart) => Array.from({ length: 30 }, (_, i) => call(clients[i % 3]!.cart, 'AddItem', { cart_uuid: cart, item_uuid: item.uuid, quantity: 1 }))),
  );
  for (const cart of carts) {
    for (const c of clients) {
      const r = (await call(c.cart, 'Get', { uuid: cart })).result;
      t.is(r.entries[0].quantity, 30, 'every node reads the same cart, with every AddItem in it');
      t.is(r.price_total, 75);
    }
  }
  // Item/Update through one node: every cart, wherever its actor lives, prices the item anew as
  // soon as the call returns (the carts' shards had cached it).
  await call(clients[1]!.item, 'Update', { item: { uuid: item.uuid, name: 'Tea', description: '', price: 3 } });
  for (const [i, cart] of carts.entries()) t.is((await call(clients[i]!.cart, 'Get', { uuid: cart })).result.price_total, 90);
  await call(clients[2]!.item, 'Delete', { item_uuid: item.uuid });
  for (const [i, cart] of carts.entries()) t.deepEqual((await call(clients[(i + 1) % 3]!.cart, 'Get', { uuid: cart })).result.entries, [], 'the deleted item left the cart');
});

test('a traced AddItem is followed from the gateway on one node to the cart on another', async (t) => {
  const schema = `carts_traced_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const secret = 'cluster-test-secret-0123456789abcdef';
  const receiver = await OtlpReceiver.start();
  t.teardown(() => receiver.close());
  t.teardown(() => dropSchema(schema));
  const nodes = await cluster3(t, ['carts'], ['--postgres', PG_URL, '--carts-schema', schema, '--carts-secret', secret, '--otlp-endpoint', receiver.endpoint, '--trace-sample-ratio', '0']);
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${signToken(secret, randomUUID(), { roles: ['admin'], ttlSeconds: 600 })}`);
  const address = `127.0.0.1:${nodes[0]!.ports['carts.grpc']}`;
  const items = new (serviceOf('item', 'Item'))(address, grpc.credentials.createInsecure());
  const carts = new (serviceOf('cart', 'Cart'))(address, grpc.credentials.createInsecure());
  t.teardown(() => (items.close(), carts.close()));
  const call = (client: grpc.Client, method: string, req: unknown, metadata = md): Promise<any> =>
    new Promise((resolve, reject) => (client as any)[method](req, metadata, { deadline: Date.now() + 20_000 }, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))));
  const item = await call(items, 'Create', { name: 'Tea', price: 2.5 });
  // Eight carts through node 1's gateway: most live on the other two nodes.
  const traces: string[] = [];
  for (let i = 0; i < 8; i++) {
    const traceId = randomUUID().replace(/-/g, '');
    traces.push(traceId);
    const traced = md.clone();
    traced.set('traceparent', `00-${traceId}-${'ab'.repeat(8)}-01`);
    await call(carts, 'AddItem', { cart_uuid: randomUUID(), item_uuid: item.uuid, quantity: 1 }, traced);
  }
  // Each thread sends its spans every second.
  const complete = (traceId: string) => ['cart.Cart/AddItem', 'ask cart.apply', 'cart.apply'].every((n) => receiver.trace(traceId).some((s) => s.name === n));
  t.true(await waitFor(async () => traces.every(complete), 15_000), 'every trace reached the cart turn');
  let crossed = 0;
  for (const traceId of traces) {
    const spans = receiver.trace(traceId);
    const gateway = spans.find((s) => s.name === 'cart.Cart/AddItem')!;
    const ask = spans.find((s) => s.name === 'ask cart.apply')!;
    const turn = spans.find((s) => s.name === 'cart.apply')!;
    t.is(ask.parentSpanId, gateway.spanId);
    t.is(turn.parentSpanId, ask.spanId, 'the turn is the child of the ask, wherever it ran');
    t.is(ask.resource['troupe.node'], gateway.resource['troupe.node']);
    if (turn.resource['troupe.node'] !== gateway.resource['troupe.node']) crossed++;
  }
  t.true(crossed > 0, `of 8 carts none lived on another node than the gateway's (${crossed})`);
});
