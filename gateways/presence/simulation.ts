// Many presence clients in one process, for load tests (`troupe presence-client --clients N` and
// `npm run bench -- presence`): each is a real Gateway.Connect stream, but spoken straight over
// node:http2 with gRPC's framing done here, since a grpc-js call costs several times the CPU of the
// few bytes it carries. Each client answers every Ping with EVEN/ODD from its clock, reconnects with
// jittered backoff like PresenceClient, and the simulation measures each client's Ping regularity.

import * as http2 from 'node:http2';
import { GATEWAY_SERVICE, USER_ID_METADATA } from './proto.js';
import { ReconnectBackoff } from './reconnect.js';

/** gRPC status codes this file needs (the numbers are the protocol's). */
const INVALID_ARGUMENT = 3;
const ABORTED = 10;
const UNIMPLEMENTED = 12;
const UNAVAILABLE = 14;
/** Codes after which reconnecting cannot help: the same request would be refused again. */
const FINAL_CODES = new Set([INVALID_ARGUMENT, ABORTED, UNIMPLEMENTED]);

const CONNECT_PATH = `/${GATEWAY_SERVICE}/Connect`;
/** A gRPC message frame is a compressed flag (1 byte), a big-endian length (4 bytes), the message. */
const FRAME_HEADER = 5;
/** Pong{status: STATUS_EVEN} and Pong{status: STATUS_ODD}, framed: field 1, varint 1 or 2. */
const PONG_EVEN = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]);
const PONG_ODD = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x02]);
/** A Ping bigger than this is not one: the stream is dropped as broken. */
const MAX_PING_BYTES = 64 * 1024;

/** Counts of values in 1 ms bins up to a ceiling; the quantiles the load test reports. */
export class MillisecondHistogram {
  readonly #bins: Uint32Array;
  count = 0;

  constructor(ceilingMs = 10_000) {
    this.#bins = new Uint32Array(ceilingMs + 1);
  }

  record(ms: number): void {
    const bin = Math.min(this.#bins.length - 1, Math.max(0, Math.round(ms)));
    this.#bins[bin]!++;
    this.count++;
  }

  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < this.#bins.length; i++) {
      seen += this.#bins[i]!;
      if (seen >= rank) return i;
    }
    return this.#bins.length - 1;
  }

  reset(): void {
    this.#bins.fill(0);
    this.count = 0;
  }
}

/** One HTTP/2 connection to the gateway, shared by many simulated clients; made again when lost. */
class GatewaySession {
  readonly #address: string;
  #session: http2.ClientHttp2Session | undefined;

  constructor(address: string) {
    this.#address = address;
  }

  get(): http2.ClientHttp2Session {
    const live = this.#session;
    if (live && !live.closed && !live.destroyed) return live;
    const session = http2.connect(`http://${this.#address}`);
    // Its streams see the failure and reconnect; the session itself is just replaced.
    session.on('error', () => {});
    session.on('goaway', () => {
      if (this.#session === session) this.#session = undefined;
    });
    session.on('close', () => {
      if (this.#session === session) this.#session = undefined;
    });
    this.#session = session;
    return session;
  }

  close(): void {
    this.#session?.close();
    this.#session = undefined;
  }
}

interface SimulatedClientOptions {
  id: string;
  session: GatewaySession;
  /** Called at every Ping received, with performance.now(). */
  onPing(at: number): void;
  /** Called on every stream end, with its gRPC status. */
  onStreamEnd(code: number, details: string): void;
  /** Called when the stream ends with a code after which the client stops (replaced, refused). */
  onGiveUp(code: number, details: string): void;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** One simulated client: a Gateway.Connect stream with the user id in its metadata. */
export class SimulatedClient {
  readonly id: string;
  readonly #o: SimulatedClientOptions;
  #stream: http2.ClientHttp2Stream | undefined;
  readonly #backoff: ReconnectBackoff;
  #stopped = false;
  /** Pings received over the client's life. */
  pings = 0;
  connects = 0;
  connected = false;

  constructor(o: SimulatedClientOptions) {
    this.id = o.id;
    this.#o = o;
    this.#backoff = new ReconnectBackoff(o.initialBackoffMs, o.maxBackoffMs);
  }

  start(): void {
    this.#stopped = false;
    this.#open();
  }

  stop(): void {
    this.#stopped = true;
    this.#backoff.cancel();
    const stream = this.#stream;
    this.#stream = undefined;
    this.connected = false;
    if (stream && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  #open(): void {
    if (this.#stopped) return;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.#o.session.get().request(
        { ':method': 'POST', ':path': CONNECT_PATH, 'content-type': 'application/grpc', te: 'trailers', [USER_ID_METADATA]: this.id },
        { endStream: false },
      );
    } catch (err) {
      // The session is closing under us: try again after the backoff.
      this.#ended(undefined, UNAVAILABLE, (err as Error).message);
      return;
    }
    this.#stream = stream;
    this.connects++;
    let code: number | undefined;
    let details = '';
    const status = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] === undefined) return;
      code = Number(headers['grpc-status']);
      details = decodeURIComponent(String(headers['grpc-message'] ?? ''));
    };
    stream.on('response', (headers) => {
      if (headers[':status'] !== 200) {
        code = UNAVAILABLE;
        details = `HTTP status ${String(headers[':status'])}`;
      }
      status(headers); // a trailers-only answer (a refusal) carries its status here
    });
    stream.on('trailers', status);
    let pending: Buffer | undefined;
    stream.on('data', (chunk: Buffer) => {
      let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      pending = undefined;
      while (buf.length >= FRAME_HEADER) {
        const length = buf.readUInt32BE(1);
        if (length > MAX_PING_BYTES) {
          stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
          return;
        }
        if (buf.length < FRAME_HEADER + length) break;
        buf = buf.subarray(FRAME_HEADER + length);
        this.#ping(stream);
      }
      if (buf.length > 0) pending = Buffer.from(buf);
    });
    const close = () => this.#ended(stream, code ?? UNAVAILABLE, details || `stream closed (HTTP/2 code ${stream.rstCode ?? 0})`);
    // The gateway ended its side (with a status in the trailers): end ours, and the call is over.
    stream.on('end', () => {
      if (!stream.destroyed) stream.close();
      close();
    });
    stream.on('error', () => {}); // 'close' follows with what is known
    stream.on('close', close);
  }

  #ping(stream: http2.ClientHttp2Stream): void {
    if (this.#stream !== stream) return;
    this.connected = true;
    this.pings++;
    this.#backoff.reset();
    this.#o.onPing(performance.now());
    stream.write(Date.now() % 2 === 0 ? PONG_EVEN : PONG_ODD);
  }

  #ended(stream: http2.ClientHttp2Stream | undefined, code: number, details: string): void {
    if (stream !== undefined && this.#stream !== stream) return;
    this.#stream = undefined;
    this.connected = false;
    this.#o.onStreamEnd(code, details);
    if (this.#stopped) return;
    if (FINAL_CODES.has(code)) {
      this.#stopped = true;
      this.#o.onGiveUp(code, details);
      return;
    }
    // Any other end (the gateway going away, saying goodbye with OK): come back after a while.
    this.#backoff.schedule(() => this.#open());
  }
}

export interface SimulationStats {
  clients: number;
  connected: number;
  pings: number;
  /** Distribution of |gap between two Pings of one client - 1000 ms|, since the last reset. */
  deviationP50Ms: number;
  deviationP99Ms: number;
  deviationMaxMs: number;
  gaps: number;
  gaveUp: number;
}

/** N clients `<prefix><i>` over a few HTTP/2 connections, measuring Ping regularity. */
export class PresenceSimulation {
  readonly clients: SimulatedClient[] = [];
  readonly #address: string;
  readonly #idPrefix: string;
  readonly #clientsPerConnection: number;
  readonly #interval: number;
  readonly #sessions: GatewaySession[] = [];
  #lastPing = new Float64Array(0);
  #started = 0;
  readonly #deviation = new MillisecondHistogram();
  #maxDeviation = 0;
  #gaveUp = 0;

  constructor(options: { address: string; clients: number; idPrefix: string; connections?: number; clientsPerConnection?: number; intervalMs?: number }) {
    this.#address = options.address;
    this.#idPrefix = options.idPrefix;
    this.#interval = options.intervalMs ?? 1000;
    this.#clientsPerConnection = options.clientsPerConnection ?? (options.connections ? Math.ceil(options.clients / options.connections) : 1000);
    this.add(options.clients);
  }

  /** Adds `n` more clients (not started yet). */
  add(n: number): void {
    const from = this.clients.length;
    const lastPing = new Float64Array(from + n).fill(-1);
    lastPing.set(this.#lastPing);
    this.#lastPing = lastPing;
    for (let i = from; i < from + n; i++) {
      const c = Math.floor(i / this.#clientsPerConnection);
      while (this.#sessions.length <= c) this.#sessions.push(new GatewaySession(this.#address));
      this.clients.push(
        new SimulatedClient({
          id: `${this.#idPrefix}${i}`,
          session: this.#sessions[c]!,
          onPing: (at) => {
            const last = this.#lastPing[i]!;
            this.#lastPing[i] = at;
            if (last < 0) return;
            const deviation = Math.abs(at - last - this.#interval);
            this.#deviation.record(deviation);
            if (deviation > this.#maxDeviation) this.#maxDeviation = deviation;
          },
          // A reconnection is not a late Ping: measure gaps within one stream only.
          onStreamEnd: () => {
            this.#lastPing[i] = -1;
          },
          onGiveUp: () => {
            this.#gaveUp++;
          },
        }),
      );
    }
  }

  /** Starts the clients not started yet, spread over `rampMs` so they do not all connect at once. */
  async start(rampMs = 0): Promise<void> {
    const pending = this.clients.slice(this.#started);
    this.#started = this.clients.length;
    const steps = Math.max(1, Math.floor(rampMs / 10));
    const perStep = Math.ceil(pending.length / steps);
    for (let i = 0; i < pending.length; i += perStep) {
      for (const c of pending.slice(i, i + perStep)) c.start();
      if (rampMs > 0) await new Promise((r) => setTimeout(r, 10));
    }
  }

  stats(): SimulationStats {
    let connected = 0;
    let pings = 0;
    for (const c of this.clients) {
      if (c.connected) connected++;
      pings += c.pings;
    }
    return {
      clients: this.clients.length,
      connected,
      pings,
      deviationP50Ms: this.#deviation.quantile(0.5),
      deviationP99Ms: this.#deviation.quantile(0.99),
      deviationMaxMs: this.#maxDeviation,
      gaps: this.#deviation.count,
      gaveUp: this.#gaveUp,
    };
  }

  resetStats(): void {
    this.#deviation.reset();
    this.#maxDeviation = 0;
  }

  stop(): void {
    for (const c of this.clients) c.stop();
    for (const s of this.#sessions) s.close();
  }
}
