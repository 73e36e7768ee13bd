// Every gRPC server of a node is bounded: a peer that sends only the HTTP/2 preface (and then
// nothing) is closed after the idle limit, on the cluster port, the inspector, presence and carts.

import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCartsServer } from '../../gateways/carts/server.js';
import { PresenceServer } from '../../gateways/presence/server.js';
import { ClusterTransport } from '../../runtime/cluster/transport.js';
import { DEFAULT_GRPC_LIMITS, GRPC_LIMIT_SETTINGS, grpcLimitsFrom, grpcServerOptions, type GrpcServerLimits } from '../../runtime/grpc-limits.js';
import { readSettings } from '../../runtime/settings.js';
import { inspectorService, startInspectorServer } from '../../runtime/inspector/service.js';
import { rootLogger } from '../../runtime/log.js';
import { startNode } from '../../runtime/node.js';

process.env.TROUPE_LOG_LEVEL ??= 'silent';
const log = rootLogger();
const SHORT: Partial<GrpcServerLimits> = { maxConnectionIdleMs: 300 };
const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

/** Writes the preface only and resolves true once the server closed the socket, false after 15 s. */
async function prefaceOnlyIsClosed(t: ExecutionContext, port: number): Promise<boolean> {
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
  t.teardown(() => socket.destroy());
  socket.on('error', () => {});
  socket.resume();
  socket.write(PREFACE);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 15_000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

test('the options: every limit set, the site overriding some, bad values refused', (t) => {
  const o = grpcServerOptions({ maxReceiveMessageBytes: 1024 }, { 'grpc.enable_channelz': 0 });
  for (const key of ['grpc.max_concurrent_streams', 'grpc.max_connection_idle_ms', 'grpc.max_connection_age_ms', 'grpc.max_connection_age_grace_ms', 'grpc.keepalive_time_ms', 'grpc.keepalive_timeout_ms']) {
    t.true(Number.isInteger(o[key]) && (o[key] as number) > 0, key);
  }
  t.is(o['grpc.max_receive_message_length'], 1024);
  t.is(o['grpc.enable_channelz'], 0);
  t.throws(() => grpcServerOptions({ maxConcurrentStreams: 0 }), { message: /maxConcurrentStreams: got 0/ });
});

test('the settings: their defaults are the limits of today; given, they reach the server options; unset streams leave each server its own', (t) => {
  const defaults = readSettings(GRPC_LIMIT_SETTINGS, { argv: [], env: {} }).values;
  t.deepEqual(grpcLimitsFrom(defaults), { maxConnectionIdleMs: DEFAULT_GRPC_LIMITS.maxConnectionIdleMs, maxConnectionAgeMs: DEFAULT_GRPC_LIMITS.maxConnectionAgeMs });
  t.is(grpcServerOptions({ maxConcurrentStreams: 10_000, ...grpcLimitsFrom(defaults) })['grpc.max_concurrent_streams'], 10_000, "presence's own default holds");
  const given = readSettings(GRPC_LIMIT_SETTINGS, { argv: ['--grpc-max-streams', '64', '--grpc-idle-timeout', '30s', '--grpc-max-connection-age', '2h'], env: {} }).values;
  t.deepEqual(grpcLimitsFrom(given), { maxConcurrentStreams: 64, maxConnectionIdleMs: 30_000, maxConnectionAgeMs: 7_200_000 });
  const o = grpcServerOptions({ maxConcurrentStreams: 10_000, ...grpcLimitsFrom(given) });
  t.is(o['grpc.max_concurrent_streams'], 64);
  t.is(o['grpc.max_connection_idle_ms'], 30_000);
  t.is(o['grpc.max_connection_age_ms'], 7_200_000);
  t.throws(() => readSettings(GRPC_LIMIT_SETTINGS, { argv: ['--grpc-max-streams', '0'], env: {} }), { message: /grpc-max-streams/ });
  t.throws(() => readSettings(GRPC_LIMIT_SETTINGS, { argv: ['--grpc-idle-timeout', 'soon'], env: {} }), { message: /grpc-idle-timeout/ });
  t.is(readSettings(GRPC_LIMIT_SETTINGS, { argv: [], env: { TROUPE_GRPC_MAX_STREAMS: '12' } }).values['grpc-max-streams'], 12);
});

test('cluster port: a preface-only connection is closed after the idle limit', async (t) => {
  const transport = await ClusterTransport.start({
    self: 'n1',
    cluster: 'limits-test',
    partitions: 8,
    resolve: () => undefined,
    onBatch() {},
    onRedirect() {},
    limits: SHORT,
    log,
  });
  t.teardown(() => transport.close());
  t.true(await prefaceOnlyIsClosed(t, transport.port), 'still open after 15 s');
});

test('inspector: a preface-only connection is closed after the idle limit', async (t) => {
  const server = await startInspectorServer('127.0.0.1', 0, inspectorService({ actorTypes: [] } as never, 'read-only', log), SHORT);
  t.teardown(() => server.close());
  t.true(await prefaceOnlyIsClosed(t, server.port), 'still open after 15 s');
});

test('presence: a preface-only connection is closed after the idle limit', async (t) => {
  const presence = new PresenceServer({ sink: { reporter: () => () => {}, onlineInLast3Mins: async () => 0 } as never, log, limits: SHORT });
  const port = await presence.listen('127.0.0.1', 0);
  t.teardown(() => presence.stop(100));
  t.true(await prefaceOnlyIsClosed(t, port), 'still open after 15 s');
});

test('carts: a preface-only connection is closed after the idle limit', async (t) => {
  const carts = await startCartsServer('127.0.0.1:0', { store: {} as never, carts: {} as never, secret: 'x'.repeat(32), log, limits: SHORT });
  t.teardown(() => carts.stop());
  t.true(await prefaceOnlyIsClosed(t, carts.port), 'still open after 15 s');
});

test('a node passes its --grpc-* limits to its own gRPC server (the inspector of a node alone)', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-grpc-limits-'));
  const node = await startNode({ dataDir, shards: 1, partitions: 4, actorModules: [], inspector: { mode: 'read-only', host: '127.0.0.1', port: 0 }, grpcLimits: grpcLimitsFrom({ 'grpc-idle-timeout': 300 }), log });
  t.teardown(async () => {
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  t.true(await prefaceOnlyIsClosed(t, node.clusterPort!), 'still open after 15 s');
});
