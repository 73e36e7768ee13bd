// The presence gRPC server over real gRPC, with the user actor's presence handlers run in-process
// behind the sink (the node-backed tests are in node.test.ts): counting, the 3-minute window with
// an injected clock, uniqueness, and every kind of bad client.

import test, { type ExecutionContext } from 'ava';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import type { ActorContext } from '../../../runtime/index.js';
import type { UserState } from '../../../actors/user.js';
import { initialPresence, presenceHandlers, presenceView, type PresenceState } from '../../../actors/user-presence.js';
import { PresenceServer, type PresenceSink } from '../../../gateways/presence/server.js';
import { fetchOnlineUsers, gatewayConnection, PresenceClient } from '../../../gateways/presence/client.js';
import { PresenceSimulation } from '../../../gateways/presence/simulation.js';
import { USER_ID_METADATA } from '../../../gateways/presence/proto.js';
import { waitFor } from '../../common.js';

const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

/** The user actors of one shard, in-process: the same handlers and view the node runs. */
function inProcessUsers() {
  const view = presenceView.create();
  const states = new Map<string, UserState>();
  const reports: { id: string; status: number; atMs: number }[] = [];
  const sink: PresenceSink = {
    reporter: (id) => (status, atMs) => {
      reports.push({ id, status, atMs });
      const ctx = { key: id, state: states.get(id) ?? ({ presence: initialPresence() } as UserState), view, now: () => atMs } as unknown as ActorContext<UserState>;
      presenceHandlers.pong(ctx, { status, atMs });
      states.set(id, ctx.state);
    },
    onlineUsers: async (nowMs) => presenceView.query(view, { nowMs }),
  };
  return { sink, states, reports };
}

/**
 * The server and what each test opens against it (connections, clients, raw calls), all released by
 * the test's teardown whatever happens: a failed test must not leave a server or a retrying client.
 */
async function startServer(
  t: ExecutionContext,
  options: { clock?: () => number; pingIntervalMs?: number; pongTimeoutMs?: number; maxPongsPerPing?: number; maxClients?: number } = {},
) {
  const users = inProcessUsers();
  const server = new PresenceServer({ sink: users.sink, log: silent, pingIntervalMs: 100, ...options });
  const port = await server.listen('127.0.0.1', 0);
  const address = `127.0.0.1:${port}`;
  const clients: PresenceClient[] = [];
  const connections: Array<{ close(): void }> = [];
  t.teardown(async () => {
    for (const c of clients) c.stop();
    for (const c of connections) c.close();
    await server.stop(100);
  });
  return {
    server,
    address,
    ...users,
    connection(): ReturnType<typeof gatewayConnection> {
      const conn = gatewayConnection(address);
      connections.push(conn);
      return conn;
    },
    client(options: ConstructorParameters<typeof PresenceClient>[0]): PresenceClient {
      const c = new PresenceClient(options);
      clients.push(c);
      return c;
    },
    raw(metadata: grpc.Metadata): ReturnType<typeof rawConnect> {
      const r = rawConnect(address, metadata);
      connections.push(r.client);
      return r;
    },
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  await waitFor(cond, timeoutMs, what, 10);
}

/** A raw Connect call with byte-level control over what the client sends. */
function rawConnect(address: string, metadata: grpc.Metadata) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest('/tenten.interview.Gateway/Connect', (b: Buffer) => b, (b: Buffer) => b, metadata);
  const pings: Buffer[] = [];
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('data', (b: Buffer) => pings.push(b));
  call.on('error', () => {});
  return { client, call, pings, status };
}

function withId(id: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set(USER_ID_METADATA, id);
  return m;
}

const PONG_EVEN = Buffer.from([0x08, 0x01]);

test('clients get Pings, answer, and are counted once each', async (t) => {
  const s = await startServer(t);
  const conn = s.connection();
  const clients = ['a', 'b', 'c'].map((id) => s.client({ id, connection: conn }));
  clients.forEach((c) => c.start());
  await until('three Pings each', () => clients.every((c) => c.pings >= 3));
  t.is(await fetchOnlineUsers(s.address), 3);
  t.true(s.reports.every((r) => r.status === 1 || r.status === 2));
  t.is(s.server.connectedClients, 3);
  clients.forEach((c) => c.stop());
  conn.close();
  await until('streams closed', () => s.server.connectedClients === 0);
  await s.server.stop();
});

test('the 3-minute window, with an injected clock: online until 180 s after the last Pong', async (t) => {
  let now = 1_700_000_000_000;
  const s = await startServer(t, { clock: () => now });
  const conn = s.connection();
  const a = s.client({ id: 'a', connection: conn });
  const b = s.client({ id: 'b', connection: conn });
  a.start();
  b.start();
  await until('Pings', () => a.pings >= 2 && b.pings >= 2);
  b.stop();
  await until('b gone', () => s.server.connectedClients === 1);
  now += 179_000;
  t.is(await fetchOnlineUsers(s.address), 2, 'b, silent for 179 s, still counts');
  const seen = a.pings;
  await until('a answers at the new time', () => a.pings >= seen + 2);
  now += 2_000;
  t.is(await fetchOnlineUsers(s.address), 1, 'b, silent for 181 s, no longer counts; a does');
  a.stop();
  await until('a gone', () => s.server.connectedClients === 0);
  now += 181_000;
  t.is(await fetchOnlineUsers(s.address), 0);
  conn.close();
  await s.server.stop();
});

test('reconnecting with the same id many times counts one user', async (t) => {
  const s = await startServer(t);
  for (let i = 0; i < 5; i++) {
    const conn = s.connection();
    const c = s.client({ id: 'same', connection: conn });
    c.start();
    await until('a Ping', () => c.pings >= 1 && s.reports.length > i);
    c.stop();
    conn.close();
  }
  t.is(await fetchOnlineUsers(s.address), 1);
  await s.server.stop();
});

test('a stream without an id, or with a bad one, ends with INVALID_ARGUMENT and a reason', async (t) => {
  const s = await startServer(t);
  const none = s.raw(new grpc.Metadata());
  const st = await none.status;
  t.is(st.code, grpc.status.INVALID_ARGUMENT);
  t.regex(st.details, /user-id/);
  for (const bad of ['x'.repeat(129), 'has space']) {
    const r = s.raw(withId(bad));
    t.is((await r.status).code, grpc.status.INVALID_ARGUMENT, bad.slice(0, 10));
    r.client.close();
  }
  const twice = new grpc.Metadata();
  twice.add(USER_ID_METADATA, 'a');
  twice.add(USER_ID_METADATA, 'b');
  const r2 = s.raw(twice);
  t.is((await r2.status).code, grpc.status.INVALID_ARGUMENT);
  t.is(s.server.connectedClients, 0);
  none.client.close();
  r2.client.close();
  await s.server.stop();
});

test('a duplicate id: the newest stream wins, the older ends with ABORTED and does not reconnect', async (t) => {
  const s = await startServer(t);
  const conn = s.connection();
  let gaveUp: { code: number; details: string } | undefined;
  const older = s.client({ id: 'dup', connection: conn, onGiveUp: (code, details) => (gaveUp = { code, details }) });
  older.start();
  await until('older pinged', () => older.pings >= 1);
  const newer = s.client({ id: 'dup', connection: conn });
  newer.start();
  await until('older aborted', () => gaveUp !== undefined);
  t.is(gaveUp!.code, grpc.status.ABORTED);
  t.regex(gaveUp!.details, /newest wins/);
  const n = newer.pings;
  await until('newer keeps getting Pings', () => newer.pings >= n + 3);
  t.is(s.server.connectedClients, 1);
  t.is(await fetchOnlineUsers(s.address), 1);
  newer.stop();
  conn.close();
  await s.server.stop();
});

test('a client that never answers is dropped with DEADLINE_EXCEEDED after the pong timeout', async (t) => {
  const s = await startServer(t, { pongTimeoutMs: 300 });
  const silentClient = s.raw(withId('mute'));
  const st = await silentClient.status;
  t.is(st.code, grpc.status.DEADLINE_EXCEEDED);
  t.true(silentClient.pings.length >= 2);
  t.is(s.server.connectedClients, 0);
  t.is(await fetchOnlineUsers(s.address), 0);
  silentClient.client.close();
  await s.server.stop();
});

test('a flood of Pongs: one per Ping is reported, a flood closes the stream with RESOURCE_EXHAUSTED', async (t) => {
  const s = await startServer(t, { maxPongsPerPing: 10 });
  const flooder = s.raw(withId('flood'));
  await until('first Ping', () => flooder.pings.length >= 1);
  for (let i = 0; i < 1000; i++) flooder.call.write(PONG_EVEN);
  const st = await flooder.status;
  t.is(st.code, grpc.status.RESOURCE_EXHAUSTED, st.details);
  const reported = s.reports.filter((r) => r.id === 'flood').length;
  t.true(reported <= flooder.pings.length, `${reported} Pongs reported for ${flooder.pings.length} Pings`);
  // The gateway still serves others.
  const conn = s.connection();
  const ok = s.client({ id: 'ok', connection: conn });
  ok.start();
  await until('ok pinged', () => ok.pings >= 2);
  ok.stop();
  conn.close();
  flooder.client.close();
  await s.server.stop();
});

test('unknown status values keep the stream alive but do not make the user online', async (t) => {
  const s = await startServer(t, { pongTimeoutMs: 400 });
  const conn = s.connection();
  const odd = s.client({ id: 'weird', connection: conn, answer: () => 7 });
  const unknown = s.client({ id: 'unknown', connection: conn, answer: () => 0 });
  odd.start();
  unknown.start();
  await until('many Pings', () => odd.pings >= 8 && unknown.pings >= 8);
  t.is(s.server.connectedClients, 2, 'answering with an unknown status is still answering');
  t.is(await fetchOnlineUsers(s.address), 0);
  t.like(s.states.get('weird')!.presence, { lastOnlineMs: null, lastStatus: 0 } satisfies Partial<PresenceState>);
  odd.stop();
  unknown.stop();
  conn.close();
  await s.server.stop();
});

test('malformed and oversized Pong bytes end only that stream', async (t) => {
  const s = await startServer(t);
  const garbage = s.raw(withId('garbage'));
  await until('first Ping', () => garbage.pings.length >= 1);
  garbage.call.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  const st = await garbage.status;
  t.not(st.code, grpc.status.OK);
  const big = s.raw(withId('big'));
  await until('first Ping', () => big.pings.length >= 1);
  big.call.write(Buffer.alloc(200_000, 0x08));
  t.is((await big.status).code, grpc.status.RESOURCE_EXHAUSTED);
  // A Pong with an unknown field and a wrong wire type for status decodes or fails, but never crashes.
  const odd = s.raw(withId('odd-fields'));
  await until('first Ping', () => odd.pings.length >= 1);
  odd.call.write(Buffer.from([0x12, 0x03, 0x61, 0x62, 0x63, 0x08, 0x02]));
  await until('reported', () => s.reports.some((r) => r.id === 'odd-fields'));
  t.is(s.reports.find((r) => r.id === 'odd-fields')!.status, 2);
  const conn = s.connection();
  const ok = s.client({ id: 'ok', connection: conn });
  ok.start();
  await until('ok pinged', () => ok.pings >= 2);
  t.is(await fetchOnlineUsers(s.address), 2);
  ok.stop();
  conn.close();
  for (const r of [garbage, big, odd]) r.client.close();
  await s.server.stop();
});

test('more clients than the limit are refused with RESOURCE_EXHAUSTED', async (t) => {
  const s = await startServer(t, { maxClients: 1 });
  const first = s.raw(withId('one'));
  await until('first Ping', () => first.pings.length >= 1);
  const second = s.raw(withId('two'));
  t.is((await second.status).code, grpc.status.RESOURCE_EXHAUSTED);
  first.call.cancel();
  for (const r of [first, second]) r.client.close();
  await s.server.stop();
});

test('stopping the gateway ends streams with UNAVAILABLE and clients keep retrying', async (t) => {
  const s = await startServer(t);
  const conn = s.connection();
  const codes: number[] = [];
  const c = s.client({ id: 'x', connection: conn, initialBackoffMs: 20, onStreamEnd: (code) => codes.push(code) });
  c.start();
  await until('pinged', () => c.pings >= 1);
  await s.server.stop();
  await until('stream ended', () => codes.length >= 1);
  t.is(codes[0], grpc.status.UNAVAILABLE);
  await until('a retry failed too', () => codes.length >= 2);
  t.is(c.connected, false);
  c.stop();
  conn.close();
});

test('gRPC health checking answers SERVING, and reflection lists the presence services', async (t) => {
  const s = await startServer(t);
  const healthDef = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const Health = (grpc.loadPackageDefinition(healthDef) as any).grpc.health.v1.Health as grpc.ServiceClientConstructor;
  const health = new Health(s.address, grpc.credentials.createInsecure()) as any;
  for (const service of ['', 'tenten.interview.StatusReader', 'tenten.interview.Gateway']) {
    const res = await new Promise<{ status: string }>((resolve, reject) => health.Check({ service }, (err: Error | null, r: { status: string }) => (err ? reject(err) : resolve(r))));
    t.is(res.status, 'SERVING', service);
  }
  health.close();

  const require = createRequire(import.meta.url);
  const reflectionRoot = dirname(require.resolve('@grpc/reflection/package.json'));
  const reflectionDef = protoLoader.loadSync(join(reflectionRoot, 'build/proto/grpc/reflection/v1/reflection.proto'), { keepCase: true });
  const Reflection = (grpc.loadPackageDefinition(reflectionDef) as any).grpc.reflection.v1.ServerReflection as grpc.ServiceClientConstructor;
  const reflection = new Reflection(s.address, grpc.credentials.createInsecure()) as any;
  const call = reflection.ServerReflectionInfo();
  const answer = await new Promise<any>((resolve, reject) => {
    call.on('data', resolve);
    call.on('error', reject);
    call.write({ list_services: '' });
  });
  call.end();
  const names = answer.list_services_response.service.map((x: { name: string }) => x.name);
  t.true(names.includes('tenten.interview.StatusReader'));
  t.true(names.includes('tenten.interview.Gateway'));
  reflection.close();
  await s.server.stop();
});

test('the load-test simulation (gRPC framed by hand over node:http2) is served and counted like real clients', async (t) => {
  const s = await startServer(t);
  t.teardown(() => s.server.stop(100));
  const sim = new PresenceSimulation({ address: s.address, clients: 20, idPrefix: 'sim-', connections: 2 });
  t.teardown(() => sim.stop());
  await sim.start();
  await until('every simulated client answered two Pings', () => sim.clients.every((c) => c.pings >= 2));
  t.is(s.server.connectedClients, 20);
  t.is(await fetchOnlineUsers(s.address), 20);
  // Their Pongs were decoded by the server as EVEN or ODD, never unknown. A client counts a Ping
  // when it arrives; its Pong reaches the server a moment later.
  await until('the server has two Pongs from each client', () => s.reports.length >= 40);
  t.true(s.reports.every((r) => r.status === 1 || r.status === 2));
  const stats = sim.stats();
  t.is(stats.connected, 20);
  t.true(stats.gaps >= 20);
  t.true(stats.deviationMaxMs < 1000);

  // Newest wins: the same ids from elsewhere close the older streams with ABORTED, and the older
  // clients give up instead of fighting back.
  const newer = new PresenceSimulation({ address: s.address, clients: 5, idPrefix: 'sim-' });
  t.teardown(() => newer.stop());
  await newer.start();
  await until('the five older clients gave up', () => sim.stats().gaveUp === 5);
  await until('the newer clients are pinged', () => newer.clients.every((c) => c.pings >= 1));
  t.is(s.server.connectedClients, 20);

  sim.stop();
  newer.stop();
  await until('every stream closed on the server', () => s.server.connectedClients === 0);
});

test('a simulated client refused for its id gives up at once', async (t) => {
  const s = await startServer(t);
  t.teardown(() => s.server.stop(100));
  const sim = new PresenceSimulation({ address: s.address, clients: 3, idPrefix: 'has space ' });
  t.teardown(() => sim.stop());
  await sim.start();
  await until('all three gave up', () => sim.stats().gaveUp === 3);
  t.is(sim.stats().pings, 0);
  t.is(s.server.connectedClients, 0);
});

test('a simulated client comes back after the gateway restarts on the same port', async (t) => {
  const first = await startServer(t);
  const port = Number(first.address.split(':')[1]);
  const sim = new PresenceSimulation({ address: first.address, clients: 4, idPrefix: 'back-' });
  t.teardown(() => sim.stop());
  await sim.start();
  await until('pinged', () => sim.clients.every((c) => c.pings >= 1));
  await first.server.stop(100);
  const again = new PresenceServer({ sink: inProcessUsers().sink, log: silent, pingIntervalMs: 100 });
  t.teardown(() => again.stop(100));
  await again.listen('127.0.0.1', port);
  const before = sim.clients.map((c) => c.pings);
  await until('every client reconnected and was pinged again', () => sim.clients.every((c, i) => c.pings >= before[i]! + 2), 10_000);
  t.true(sim.clients.every((c) => c.connects >= 2));
});
