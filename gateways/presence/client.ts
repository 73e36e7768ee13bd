// Presence clients on grpc-js: one client that answers each Ping with STATUS_EVEN or STATUS_ODD from
// its clock and reconnects with backoff, and StatusReader calls. Many clients at once, for load
// tests, are simulation.ts.

import * as grpc from '@grpc/grpc-js';
import { presenceProto, USER_ID_METADATA, type OnlineUsersResponse, type Pong } from './proto.js';
import { ReconnectBackoff } from './reconnect.js';

const STATUS_EVEN = 1;
const STATUS_ODD = 2;

/** Codes after which reconnecting cannot help: the same request would be refused again. */
const FINAL_CODES = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.ABORTED, grpc.status.UNIMPLEMENTED]);

export interface PresenceClientOptions {
  id: string;
  /** A Gateway client (one HTTP/2 connection) shared by many PresenceClients. */
  connection: grpc.Client;
  /** Answers Pings with this status instead of EVEN/ODD from the clock (tests of bad clients). */
  answer?: (nowMs: number) => number;
  /** Called at every Ping received, with performance.now(). */
  onPing?: (at: number) => void;
  /** Called when the stream ends with a code after which the client stops (replaced, refused). */
  onGiveUp?: (code: grpc.status, details: string) => void;
  /** Called on every stream end, with its status. */
  onStreamEnd?: (code: grpc.status, details: string) => void;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** The status a well-behaved client answers: even or odd milliseconds since the epoch. */
export function statusFromClock(nowMs: number): number {
  return nowMs % 2 === 0 ? STATUS_EVEN : STATUS_ODD;
}

export function gatewayConnection(address: string): grpc.Client {
  const { GatewayClient } = presenceProto();
  // A pool of its own, so that several connections to one address are really several.
  return new GatewayClient(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
}

export class PresenceClient {
  readonly id: string;
  readonly #options: PresenceClientOptions;
  #call: grpc.ClientDuplexStream<Pong, unknown> | undefined;
  readonly #backoff: ReconnectBackoff;
  #stopped = false;
  /** Pings received over the client's life. */
  pings = 0;
  connects = 0;
  connected = false;

  constructor(options: PresenceClientOptions) {
    this.id = options.id;
    this.#options = options;
    this.#backoff = new ReconnectBackoff(options.initialBackoffMs, options.maxBackoffMs);
  }

  start(): void {
    this.#stopped = false;
    this.#open();
  }

  stop(): void {
    this.#stopped = true;
    this.#backoff.cancel();
    const call = this.#call;
    this.#call = undefined;
    this.connected = false;
    if (call) {
      call.end();
      call.cancel();
    }
  }

  #open(): void {
    if (this.#stopped) return;
    const metadata = new grpc.Metadata();
    metadata.set(USER_ID_METADATA, this.id);
    const connection = this.#options.connection as unknown as { Connect(m: grpc.Metadata): grpc.ClientDuplexStream<Pong, unknown> };
    const call = connection.Connect(metadata);
    this.#call = call;
    this.connects++;
    let ended = false;
    call.on('data', () => {
      if (this.#call !== call) return;
      this.connected = true;
      this.pings++;
      this.#backoff.reset();
      this.#options.onPing?.(performance.now());
      const now = Date.now();
      call.write({ status: this.#options.answer ? this.#options.answer(now) : statusFromClock(now) });
    });
    const end = (code: grpc.status, details: string): void => {
      if (ended) return;
      ended = true;
      if (this.#call !== call) return;
      this.#call = undefined;
      this.connected = false;
      this.#options.onStreamEnd?.(code, details);
      if (this.#stopped) return;
      if (FINAL_CODES.has(code)) {
        this.#stopped = true;
        this.#options.onGiveUp?.(code, details);
        return;
      }
      this.#backoff.schedule(() => this.#open());
    };
    call.on('error', (err: grpc.ServiceError) => end(err.code ?? grpc.status.UNKNOWN, err.details ?? err.message));
    call.on('status', (s: grpc.StatusObject) => end(s.code, s.details));
  }

}

/** A StatusReader over one kept-open connection (for tools that ask often, like the benchmark). */
export class StatusReaderConnection {
  readonly #client: grpc.Client & {
    FetchOnlineUsersInLast3Mins(req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: OnlineUsersResponse) => void): void;
  };

  constructor(address: string) {
    const { StatusReaderClient } = presenceProto();
    this.#client = new StatusReaderClient(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as never;
  }

  fetchOnlineUsers(timeoutMs = 5000): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.#client.FetchOnlineUsersInLast3Mins({}, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(Number(res?.online_users ?? 0))));
    });
  }

  close(): void {
    this.#client.close();
  }
}

/** Calls StatusReader.FetchOnlineUsersInLast3Mins once, on a connection of its own. */
export async function fetchOnlineUsers(address: string, timeoutMs = 5000): Promise<number> {
  const reader = new StatusReaderConnection(address);
  try {
    return await reader.fetchOnlineUsers(timeoutMs);
  } finally {
    reader.close();
  }
}
