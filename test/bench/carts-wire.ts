// The carts bench's gRPC client, lean on purpose: unary calls spoken straight over node:http2 with
// gRPC's framing done here (as gateways/presence/simulation.ts does for presence), requests encoded
// by hand as protobuf bytes, replies not decoded: a call is OK when its grpc-status is 0 and its body
// is one well-formed frame, else a failure counted by its code. A grpc-js client costs about as much
// CPU per call as the server, which on a small machine measures the client instead of the gateway.
// Used by the load generator and the Get prober (test/bench/carts-load.ts), both child processes.

import * as http2 from 'node:http2';

/** A gRPC message frame is a compressed flag (1 byte), a big-endian length (4 bytes), the message. */
const FRAME_HEADER = 5;
/** A reply bigger than this is not a cart we made: the stream is cancelled and the call failed. */
export const MAX_REPLY_BYTES = 256 * 1024;

/** gRPC status names by code (the numbers are the protocol's). */
const STATUS_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE',
  'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];

/**
 * How a call ended: 'OK', a gRPC status name ('UNAVAILABLE'), or what went wrong below gRPC:
 * 'HTTP_<status>', 'STREAM_RESET' (no status, stream closed), 'REPLY_TOO_LARGE', 'BAD_FRAME'
 * (status 0 without exactly one frame in the body), 'SESSION_ERROR' (request refused by a closing session).
 */
export type Outcome = string;

export function statusName(code: number): string {
  return STATUS_NAMES[code] ?? `STATUS_${code}`;
}

// ---- protobuf encoding of the two requests (field tag = (field << 3) | wire type) ----

const LEN = 2; // wire type of strings and bytes
const VARINT = 0;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

function writeString(buf: Buffer, at: number, field: number, s: string, bytes: number): number {
  at = writeVarint(buf, at, (field << 3) | LEN);
  at = writeVarint(buf, at, bytes);
  return at + buf.write(s, at, bytes, 'utf8');
}

function stringFieldSize(field: number, bytes: number): number {
  return varintSize((field << 3) | LEN) + varintSize(bytes) + bytes;
}

/** Puts the 5-byte gRPC frame header in front of a message of `length` bytes at buf[5..]. */
function frameHeader(buf: Buffer, length: number): void {
  buf[0] = 0; // not compressed
  buf.writeUInt32BE(length, 1);
}

/** cart.CartAddItemMsg {1: cart_uuid, 2: item_uuid, 3: int32 quantity}, framed. Quantity >= 0. */
export function addItemFrame(cartUuid: string, itemUuid: string, quantity: number): Buffer {
  const cartBytes = Buffer.byteLength(cartUuid);
  const itemBytes = Buffer.byteLength(itemUuid);
  // int32 on the wire is a varint; negative values would take 10 bytes, which the bench never sends.
  const length = stringFieldSize(1, cartBytes) + stringFieldSize(2, itemBytes) + (quantity === 0 ? 0 : varintSize((3 << 3) | VARINT) + varintSize(quantity));
  const buf = Buffer.allocUnsafe(FRAME_HEADER + length);
  frameHeader(buf, length);
  let at = writeString(buf, FRAME_HEADER, 1, cartUuid, cartBytes);
  at = writeString(buf, at, 2, itemUuid, itemBytes);
  if (quantity !== 0) {
    at = writeVarint(buf, at, (3 << 3) | VARINT);
    writeVarint(buf, at, quantity);
  }
  return buf;
}

/** cart.CartGetMsg {1: uuid}, framed. */
export function getFrame(cartUuid: string): Buffer {
  const bytes = Buffer.byteLength(cartUuid);
  const length = stringFieldSize(1, bytes);
  const buf = Buffer.allocUnsafe(FRAME_HEADER + length);
  frameHeader(buf, length);
  writeString(buf, FRAME_HEADER, 1, cartUuid, bytes);
  return buf;
}

// ---- unary calls over a few HTTP/2 sessions ----

export const ADD_ITEM_PATH = '/cart.Cart/AddItem';
export const GET_PATH = '/cart.Cart/Get';

/** A few HTTP/2 connections to the gateway, used round-robin; a lost one is made again. */
export class UnaryClient {
  readonly #authority: string;
  readonly #sessions: (http2.ClientHttp2Session | undefined)[];
  readonly #headers = new Map<string, http2.OutgoingHttpHeaders>();
  readonly #token: string;
  #next = 0;

  constructor(address: string, token: string, sessions = 4) {
    this.#authority = `http://${address}`;
    this.#token = token;
    this.#sessions = new Array(sessions).fill(undefined);
  }

  #session(): http2.ClientHttp2Session {
    const i = this.#next;
    this.#next = (i + 1) % this.#sessions.length;
    const live = this.#sessions[i];
    if (live && !live.closed && !live.destroyed) return live;
    const session = http2.connect(this.#authority);
    session.on('error', () => {}); // its streams fail and say so; the session is replaced
    const forget = () => {
      if (this.#sessions[i] === session) this.#sessions[i] = undefined;
    };
    session.on('goaway', forget);
    session.on('close', forget);
    this.#sessions[i] = session;
    return session;
  }

  #headersOf(path: string): http2.OutgoingHttpHeaders {
    let headers = this.#headers.get(path);
    if (!headers) {
      headers = { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${this.#token}` };
      this.#headers.set(path, headers);
    }
    return headers;
  }

  /** Opens every session and waits until each is connected (so a phase does not time the handshakes). */
  async connect(): Promise<void> {
    await Promise.all(
      this.#sessions.map(() => {
        const session = this.#session();
        return session.connecting ? new Promise<void>((resolve, reject) => session.once('connect', () => resolve()).once('error', reject)) : undefined;
      }),
    );
  }

  /**
   * One unary call: sends `frame` (an already framed request) to `path`, calls `done` once with
   * the outcome. The reply body is counted and its frame header checked, not decoded.
   */
  call(path: string, frame: Buffer, done: (outcome: Outcome) => void): void {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.#session().request({ ...this.#headersOf(path) }, { endStream: false });
    } catch {
      queueMicrotask(() => done('SESSION_ERROR'));
      return;
    }
    let outcome: Outcome | undefined;
    let received = 0;
    let declared = -1; // the message length in the frame header, once 5 bytes are in
    let head: Buffer | undefined;
    const status = (headers: http2.IncomingHttpHeaders) => {
      const s = headers['grpc-status'];
      if (s !== undefined && outcome === undefined) outcome = statusName(Number(s));
    };
    stream.on('response', (headers) => {
      const http = headers[':status'];
      if (http !== 200) outcome = `HTTP_${String(http)}`;
      else status(headers); // a trailers-only answer (a refusal) carries its status here
    });
    stream.on('trailers', status);
    stream.on('data', (chunk: Buffer) => {
      if (declared < 0) {
        // Only the first 5 bytes are kept: the frame header. Usually they come in the first chunk.
        head = head ? Buffer.concat([head, chunk.subarray(0, FRAME_HEADER - head.length)]) : chunk.length >= FRAME_HEADER ? chunk : Buffer.from(chunk);
        if (head.length >= FRAME_HEADER) declared = head.readUInt32BE(1);
        head = declared < 0 ? head : undefined;
      }
      received += chunk.length;
      if (received > MAX_REPLY_BYTES || declared > MAX_REPLY_BYTES) {
        outcome = 'REPLY_TOO_LARGE';
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    stream.on('error', () => {}); // 'close' follows, with what is known
    stream.on('close', () => {
      if (outcome === undefined) outcome = 'STREAM_RESET';
      // OK means one whole frame came back: a status 0 without one is not an acknowledged call.
      else if (outcome === 'OK' && (declared < 0 || received !== FRAME_HEADER + declared)) outcome = 'BAD_FRAME';
      done(outcome);
    });
    stream.end(frame);
  }

  close(): void {
    for (const [i, s] of this.#sessions.entries()) {
      s?.close();
      this.#sessions[i] = undefined;
    }
  }

  /** Destroys every session at once: calls in flight end with STREAM_RESET. */
  destroy(): void {
    for (const [i, s] of this.#sessions.entries()) {
      s?.destroy();
      this.#sessions[i] = undefined;
    }
  }
}
