// The presence gRPC server: the Gateway service (one stream per client, a Ping every second from
// one timing wheel, each accepted Pong reported to the user's actor), the StatusReader, health
// checking and reflection. What a Pong becomes is behind PresenceSink, so the server is tested
// alone and wired to actors in index.ts.

import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { Counter, Gauge, type Registry } from 'prom-client';
import { grpcServerOptions, shutdownGrpcServer, type GrpcServerLimits, type Logger } from '../../runtime/index.js';
import type { PublicTls } from '../public-tls.js';
import { GATEWAY_SERVICE, presenceProto, STATUS_READER_SERVICE, USER_ID_METADATA, type Pong } from './proto.js';
import { TimingWheel } from './timing-wheel.js';

/** Where accepted Pongs go and where the online count comes from. */
export interface PresenceSink {
  /** A function that reports one user's Pongs (made once per stream, so it can hold a reference). */
  reporter(userId: string): (status: number, atMs: number) => void;
  /** Unique users online in the 3 minutes ending at `nowMs`, across the cluster. */
  onlineUsers(nowMs: number): Promise<number>;
}

export interface PresenceServerOptions {
  sink: PresenceSink;
  log: Logger;
  metrics?: Registry;
  /** Wall clock for Pong receive times and the StatusReader's window (ms since the epoch). */
  clock?: () => number;
  pingIntervalMs?: number;
  /** A stream with no Pong for this long is closed with DEADLINE_EXCEEDED. */
  pongTimeoutMs?: number;
  /** More Pongs than this between two Pings closes the stream with RESOURCE_EXHAUSTED. */
  maxPongsPerPing?: number;
  /** Streams beyond this are refused with RESOURCE_EXHAUSTED. */
  maxClients?: number;
  /** The gRPC server's connection limits (runtime/grpc-limits.ts has the defaults). */
  limits?: Partial<GrpcServerLimits>;
  /** Serve TLS with this certificate (public-tls.ts); absent: plaintext. */
  tls?: Pick<PublicTls, 'cert' | 'key'>;
}

export const DEFAULT_PING_INTERVAL_MS = 1000;
export const DEFAULT_PONG_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_PONGS_PER_PING = 10;
export const DEFAULT_MAX_CLIENTS = 100_000;
/** Ticks per ping interval: a client's Ping is due within one tick (10 ms at 1 s) of its time. */
const WHEEL_SLOTS = 100;
/** Pings buffered for a client that does not read beyond this are skipped, not queued. */
const MAX_BUFFERED_PINGS = 8;
const MAX_USER_ID_LENGTH = 128;
/** How long accepted Pongs wait to be told together (far below the window's 1 s resolution). */
const REPORT_BATCH_MS = 20;
const PRINTABLE_ID = /^[\x21-\x7e]+$/;
const PING = {};

type Call = grpc.ServerDuplexStream<Pong, Record<string, never>>;

/** Why a user id from metadata is refused, or undefined when it is fine. */
export function userIdProblem(values: grpc.MetadataValue[]): string | undefined {
  if (values.length === 0) return `missing call metadata "${USER_ID_METADATA}": send the client's unique id in it`;
  if (values.length > 1) return `call metadata "${USER_ID_METADATA}" given ${values.length} times: send exactly one id`;
  const id = values[0];
  if (typeof id !== 'string') return `call metadata "${USER_ID_METADATA}" must be text, not binary`;
  if (id.length === 0 || id.length > MAX_USER_ID_LENGTH || !PRINTABLE_ID.test(id)) {
    return `call metadata "${USER_ID_METADATA}" must be 1 to ${MAX_USER_ID_LENGTH} printable ASCII characters without spaces`;
  }
  return undefined;
}

/** One connected client's stream. */
class ClientStream {
  readonly id: string;
  readonly call: Call;
  readonly report: (status: number, atMs: number) => void;
  /** performance.now() of the last accepted Pong (or of the connection). */
  lastAnswerAt: number;
  awaitingPong = false;
  pongsSincePing = 0;
  closed = false;

  constructor(id: string, call: Call, report: (status: number, atMs: number) => void, now: number) {
    this.id = id;
    this.call = call;
    this.report = report;
    this.lastAnswerAt = now;
  }
}

export class PresenceServer {
  readonly #options: Required<Omit<PresenceServerOptions, 'metrics' | 'limits' | 'tls'>>;
  readonly #credentials: grpc.ServerCredentials;
  readonly #server: grpc.Server;
  readonly #health: HealthImplementation;
  readonly #clients = new Map<string, ClientStream>();
  readonly #wheel: TimingWheel<ClientStream>;
  readonly #metrics: ReturnType<typeof makeMetrics>;
  #inFlightCount: Promise<number> | undefined;
  #stopping = false;
  #overloadWarnedAt = 0;
  #pending: { client: ClientStream; status: number; atMs: number }[] = [];
  #flushTimer: NodeJS.Timeout | undefined;

  constructor(options: PresenceServerOptions) {
    this.#options = {
      sink: options.sink,
      log: options.log,
      clock: options.clock ?? Date.now,
      pingIntervalMs: options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
      pongTimeoutMs: options.pongTimeoutMs ?? DEFAULT_PONG_TIMEOUT_MS,
      maxPongsPerPing: options.maxPongsPerPing ?? DEFAULT_MAX_PONGS_PER_PING,
      maxClients: options.maxClients ?? DEFAULT_MAX_CLIENTS,
    };
    this.#metrics = makeMetrics(options.metrics);
    // TLS without client certificates: a client names itself in its user-id metadata.
    this.#credentials = options.tls
      ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: options.tls.cert, private_key: options.tls.key }], false)
      : grpc.ServerCredentials.createInsecure();
    this.#wheel = new TimingWheel<ClientStream>({
      periodMs: this.#options.pingIntervalMs,
      slots: WHEEL_SLOTS,
      fire: (client, now) => this.#ping(client, now),
    });
    const proto = presenceProto();
    // A Pong is a few bytes; nothing this server takes is large. Streams are users, and the load
    // simulation (or a proxy) carries a thousand or more on one connection: maxClients bounds them.
    this.#server = new grpc.Server(grpcServerOptions({ maxReceiveMessageBytes: 64 * 1024, maxConcurrentStreams: 10_000, ...options.limits }));
    this.#server.addService(proto.gatewayService, { Connect: (call: Call) => this.#connect(call) });
    this.#server.addService(proto.statusReaderService, {
      FetchOnlineUsersInLast3Mins: (_call: unknown, callback: grpc.sendUnaryData<{ online_users: number }>) => this.#fetchOnline(callback),
    });
    this.#health = new HealthImplementation({ '': 'NOT_SERVING', [GATEWAY_SERVICE]: 'NOT_SERVING', [STATUS_READER_SERVICE]: 'NOT_SERVING' });
    this.#health.addToServer(this.#server);
    new ReflectionService(proto.packageDefinition).addToServer(this.#server);
  }

  get connectedClients(): number {
    return this.#clients.size;
  }

  /** Binds `host:port` (port 0: any free port) and starts pinging; resolves the bound port. */
  async listen(host: string, port: number): Promise<number> {
    const bound = await new Promise<number>((resolve, reject) => {
      const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
      this.#server.bindAsync(address, this.#credentials, (err, p) => (err ? reject(new Error(`presence gateway cannot listen on ${address}: ${err.message}`)) : resolve(p)));
    });
    this.#wheel.start();
    for (const service of ['', GATEWAY_SERVICE, STATUS_READER_SERVICE]) this.#health.setStatus(service, 'SERVING');
    return bound;
  }

  /** Ends every stream with UNAVAILABLE (clients reconnect elsewhere) and stops the server. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const service of ['', GATEWAY_SERVICE, STATUS_READER_SERVICE]) this.#health.setStatus(service, 'NOT_SERVING');
    this.#wheel.stop();
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushReports();
    for (const client of [...this.#clients.values()]) this.#close(client, grpc.status.UNAVAILABLE, 'the presence gateway is shutting down; reconnect', 'shutdown');
    await shutdownGrpcServer(this.#server, graceMs);
  }

  #connect(call: Call): void {
    const problem = this.#stopping ? 'the presence gateway is shutting down; reconnect' : userIdProblem(call.metadata.get(USER_ID_METADATA));
    if (problem) {
      const code = this.#stopping ? grpc.status.UNAVAILABLE : grpc.status.INVALID_ARGUMENT;
      this.#metrics.closed.inc({ reason: this.#stopping ? 'shutdown' : 'bad_id' });
      call.on('error', () => {});
      call.emit('error', { code, details: problem });
      return;
    }
    const id = call.metadata.get(USER_ID_METADATA)[0] as string;
    const previous = this.#clients.get(id);
    if (!previous && this.#clients.size >= this.#options.maxClients) {
      this.#metrics.closed.inc({ reason: 'full' });
      call.on('error', () => {});
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: `the presence gateway holds its maximum of ${this.#options.maxClients} clients; retry later or connect to another node` });
      return;
    }
    if (previous) {
      this.#close(previous, grpc.status.ABORTED, `replaced by a newer stream with the same ${USER_ID_METADATA} "${id}" (newest wins)`, 'replaced');
    }
    const client = new ClientStream(id, call, this.#options.sink.reporter(id), performance.now());
    this.#clients.set(id, client);
    this.#metrics.connected.set(this.#clients.size);
    call.on('data', (pong: Pong) => this.#pong(client, pong));
    // The client half-closed: it says goodbye; answer OK.
    call.on('end', () => this.#close(client, grpc.status.OK, 'OK', 'client_end'));
    call.on('cancelled', () => this.#forget(client, 'cancelled'));
    call.on('error', () => this.#forget(client, 'error'));
    call.on('close', () => this.#forget(client, 'closed'));
    // First Ping at once, so a new client is online within one round trip; then one per interval.
    this.#ping(client, performance.now());
    this.#wheel.add(client);
  }

  #ping(client: ClientStream, now: number): void {
    if (client.closed) return;
    if (now - client.lastAnswerAt > this.#options.pongTimeoutMs) {
      this.#close(client, grpc.status.DEADLINE_EXCEEDED, `no Pong for ${this.#options.pongTimeoutMs} ms; answer every Ping`, 'pong_timeout');
      return;
    }
    if (client.call.writableLength > MAX_BUFFERED_PINGS) {
      this.#metrics.pingsSkipped.inc();
      return;
    }
    client.awaitingPong = true;
    client.pongsSincePing = 0;
    try {
      client.call.write(PING);
      this.#metrics.pings.inc();
    } catch {
      this.#forget(client, 'error');
    }
  }

  #pong(client: ClientStream, pong: Pong): void {
    if (client.closed) return;
    if (++client.pongsSincePing > this.#options.maxPongsPerPing) {
      this.#close(client, grpc.status.RESOURCE_EXHAUSTED, `more than ${this.#options.maxPongsPerPing} Pongs for one Ping; answer each Ping once`, 'pong_flood');
      return;
    }
    if (!client.awaitingPong) {
      this.#metrics.pongs.inc({ outcome: 'extra' });
      return;
    }
    client.awaitingPong = false;
    client.lastAnswerAt = performance.now();
    const raw = pong?.status;
    // Unknown enum values (a newer client, or garbage) count as STATUS_UNKNOWN: not online.
    const status = raw === 1 || raw === 2 ? raw : 0;
    this.#metrics.pongs.inc({ outcome: raw === 1 ? 'even' : raw === 2 ? 'odd' : raw === 0 ? 'unknown' : 'unknown_value' });
    this.#pending.push({ client, status, atMs: this.#options.clock() });
    this.#flushTimer ??= setTimeout(() => this.#flushReports(), REPORT_BATCH_MS);
  }

  /**
   * Pongs arrive a few per socket read; told one by one, each would cost the router a message to a
   * shard. Gathered for REPORT_BATCH_MS and told in one burst, they cross to the shards in a few
   * batches and commit in one transaction per shard.
   */
  #flushReports(): void {
    this.#flushTimer = undefined;
    const batch = this.#pending;
    this.#pending = [];
    for (const { client, status, atMs } of batch) {
      try {
        client.report(status, atMs);
      } catch (err) {
        // Overloaded (or the node stopping): the next Pong, a second later, reports the user again.
        this.#metrics.pongs.inc({ outcome: 'dropped_overloaded' });
        const now = Date.now();
        if (now - this.#overloadWarnedAt > 5000) {
          this.#overloadWarnedAt = now;
          this.#options.log.warn({ err: (err as Error).message, user: client.id }, 'pong not reported to its user actor; the next one will be');
        }
      }
    }
  }

  #close(client: ClientStream, code: grpc.status, details: string, reason: string): void {
    if (client.closed) return;
    this.#forget(client, reason);
    const call = client.call;
    call.on('error', () => {});
    if (code === grpc.status.OK) call.end();
    else call.emit('error', { code, details });
  }

  #forget(client: ClientStream, reason: string): void {
    if (client.closed) return;
    client.closed = true;
    this.#wheel.remove(client);
    if (this.#clients.get(client.id) === client) this.#clients.delete(client.id);
    this.#metrics.connected.set(this.#clients.size);
    this.#metrics.closed.inc({ reason });
  }

  #fetchOnline(callback: grpc.sendUnaryData<{ online_users: number }>): void {
    // Concurrent readers share one query: a burst of StatusReader calls costs the shards one pass.
    const count = (this.#inFlightCount ??= Promise.resolve()
      .then(() => this.#options.sink.onlineUsers(this.#options.clock()))
      .finally(() => {
        this.#inFlightCount = undefined;
      }));
    count.then(
      (n) => callback(null, { online_users: n }),
      (err: Error) => callback({ code: grpc.status.UNAVAILABLE, details: `cannot count online users right now: ${err.message}` }),
    );
  }
}

function makeMetrics(registry: Registry | undefined) {
  const registers = registry ? [registry] : [];
  return {
    connected: new Gauge({ name: 'troupe_presence_connected_clients', help: 'Presence streams open on this node', registers }),
    pings: new Counter({ name: 'troupe_presence_pings_total', help: 'Pings sent', registers }),
    pingsSkipped: new Counter({ name: 'troupe_presence_pings_skipped_total', help: 'Pings not sent because the client is not reading', registers }),
    pongs: new Counter({ name: 'troupe_presence_pongs_total', help: 'Pongs received, by outcome', labelNames: ['outcome'], registers }),
    closed: new Counter({ name: 'troupe_presence_streams_closed_total', help: 'Streams ended, by reason', labelNames: ['reason'], registers }),
  };
}
