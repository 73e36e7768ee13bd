// The binary frames nodes exchange: a hello, a batch (the flat message and reply arrays of
// runtime/envelope.ts), a redirect (messages sent to a node that no longer owns their partition,
// going back with the owner it believes in), and a hand-off with its acknowledgement (the state of
// partitions moving to a new owner). One Buffer per frame; decoding checks every length, since
// frames arrive from the network, and a link's first frame is decoded as a hello only.

import { deserialize, serialize } from 'node:v8';
import { MSG_STRIDE, REPLY_STRIDE } from '../envelope.js';
import { DEFAULT_MAX_FRAME_BYTES } from './frame-limit.js';

/** The default frame limit (frame-limit.ts); each encoder and decoder takes the one in force. */
export const MAX_FRAME_BYTES = DEFAULT_MAX_FRAME_BYTES;

/** A hello is a node id, a cluster name and a count: anything larger is not one. */
export const MAX_HELLO_BYTES = 1024;
/** Node ids are `<node-name>-<time36>-<hex6>`; cluster names are key prefixes. */
const MAX_HELLO_NAME_BYTES = 255;

const MAGIC = 0x54; // 'T'
const VERSION = 1;
const KIND_HELLO = 1;
const KIND_BATCH = 2;
const KIND_REDIRECT = 3;
const KIND_HANDOFF = 4;
const KIND_HANDOFF_ACK = 5;

/** Values per row in `HandOffFrame.rows`: actor id, partition, state. */
export const HANDOFF_ROW_STRIDE = 3;

const TAG_UNDEFINED = 0;
const TAG_NULL = 1;
const TAG_FALSE = 2;
const TAG_TRUE = 3;
const TAG_INT = 4;
const TAG_FLOAT = 5;
const TAG_STRING = 6;
const TAG_V8 = 7;

export interface HelloFrame {
  kind: 'hello';
  node: string;
  cluster: string;
  partitions: number;
}

export interface BatchFrame {
  kind: 'batch';
  /** Messages, MSG_STRIDE values each: actor id, partition, handler, payload, origin, ask id. */
  m: unknown[];
  /** Replies, REPLY_STRIDE values each: ask id, ok (1) or failed (0), value. */
  r: unknown[];
}

export interface RedirectFrame {
  kind: 'redirect';
  /** The ring epoch at which the sender found it does not own these partitions. */
  epoch: number;
  /** The owner the sender believes in at that epoch ('' if none yet). */
  owner: string;
  m: unknown[];
}

/** The committed state of partitions moving to the receiver; it acknowledges once it has stored them. */
export interface HandOffFrame {
  kind: 'handoff';
  /** Names this hand-off in the acknowledgement. */
  id: number;
  epoch: number;
  partitions: number[];
  /** HANDOFF_ROW_STRIDE values per actor: id, partition, state. */
  rows: unknown[];
}

export interface HandOffAckFrame {
  kind: 'handoff-ack';
  id: number;
  /** '' when stored; otherwise why the receiver could not take the state. */
  error: string;
}

export type Frame = HelloFrame | BatchFrame | RedirectFrame | HandOffFrame | HandOffAckFrame;

/** A frame that cannot be decoded (or encoded): says where and why. */
export class FrameError extends Error {
  readonly code: string = 'BAD_FRAME';
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/** A frame (or one message of it) larger than the frame limit. */
export class FrameTooLarge extends FrameError {
  override readonly code = 'FRAME_TOO_LARGE';
  constructor(message: string) {
    super(message);
    this.name = 'FrameTooLarge';
  }
}

// ---- encoding -----------------------------------------------------------------------------------

let scratch = Buffer.allocUnsafe(64 * 1024);
let pos = 0;
/** The limit of the frame being encoded (set by begin). */
let limit = MAX_FRAME_BYTES;
/** reserve() asks for up to this much more than it writes (a varint's 8 bytes): finish() checks exactly. */
const RESERVE_SLACK = 16;

function reserve(n: number): void {
  if (pos + n <= scratch.length) return;
  // Only when the buffer must grow: a frame past the limit stops here, before its rest is encoded.
  if (pos + n > limit + RESERVE_SLACK) throw new FrameTooLarge(`frame of more than ${limit} bytes (the cluster frame limit, --cluster-max-frame)`);
  let size = scratch.length * 2;
  while (size < pos + n) size *= 2;
  if (size > limit + RESERVE_SLACK) size = Math.max(pos + n, limit + RESERVE_SLACK);
  const next = Buffer.allocUnsafe(size);
  scratch.copy(next, 0, 0, pos);
  scratch = next;
}

function writeVarint(n: number): void {
  reserve(8);
  while (n >= 0x80) {
    scratch[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  scratch[pos++] = n;
}

function writeUint(n: unknown, what: string): void {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new FrameError(`${what} must be a non-negative whole number, got ${String(n)}`);
  writeVarint(n);
}

function writeString(s: string): void {
  const len = Buffer.byteLength(s);
  writeVarint(len);
  reserve(len);
  pos += scratch.write(s, pos, 'utf8');
}

function writeStringField(s: unknown, what: string): void {
  if (typeof s !== 'string') throw new FrameError(`${what} must be a string, got ${typeof s}`);
  writeString(s);
}

function writePayload(v: unknown): void {
  switch (typeof v) {
    case 'undefined':
      reserve(1);
      scratch[pos++] = TAG_UNDEFINED;
      return;
    case 'boolean':
      reserve(1);
      scratch[pos++] = v ? TAG_TRUE : TAG_FALSE;
      return;
    case 'number':
      // Zigzag doubles the magnitude, so only integers below 2^52 keep it a safe integer.
      if (Number.isInteger(v) && Math.abs(v) < 2 ** 52 && !Object.is(v, -0)) {
        reserve(1);
        scratch[pos++] = TAG_INT;
        // zigzag over safe integers, by arithmetic (bit operators stop at 32 bits)
        writeVarint(v >= 0 ? v * 2 : -v * 2 - 1);
      } else {
        reserve(9);
        scratch[pos++] = TAG_FLOAT;
        pos = scratch.writeDoubleLE(v, pos);
      }
      return;
    case 'string':
      reserve(1);
      scratch[pos++] = TAG_STRING;
      writeString(v);
      return;
    default:
      if (v === null) {
        reserve(1);
        scratch[pos++] = TAG_NULL;
        return;
      }
      let blob: Buffer;
      try {
        blob = serialize(v);
      } catch (err) {
        throw new FrameError(`a payload cannot be sent to another node: ${(err as Error).message}`);
      }
      reserve(1);
      scratch[pos++] = TAG_V8;
      writeVarint(blob.length);
      reserve(blob.length);
      pos += blob.copy(scratch, pos);
  }
}

function begin(kind: number, maxBytes: number): void {
  pos = 0;
  limit = maxBytes;
  reserve(3);
  scratch[pos++] = MAGIC;
  scratch[pos++] = VERSION;
  scratch[pos++] = kind;
}

function finish(): Buffer {
  if (pos > limit) throw new FrameTooLarge(`frame of ${pos} bytes exceeds the cluster frame limit of ${limit} (--cluster-max-frame)`);
  const out = Buffer.allocUnsafe(pos);
  scratch.copy(out, 0, 0, pos);
  return out;
}

function writeMessages(m: readonly unknown[]): void {
  if (m.length % MSG_STRIDE !== 0) throw new FrameError(`message array length ${m.length} is not a multiple of ${MSG_STRIDE}`);
  // Handler names repeat across a batch: a table sends each once.
  const handlers = new Map<string, number>();
  for (let i = 2; i < m.length; i += MSG_STRIDE) {
    const h = m[i];
    if (typeof h !== 'string') throw new FrameError(`handler of message ${i / MSG_STRIDE} must be a string, got ${typeof h}`);
    if (!handlers.has(h)) handlers.set(h, handlers.size);
  }
  writeVarint(handlers.size);
  for (const h of handlers.keys()) writeString(h);
  writeVarint(m.length / MSG_STRIDE);
  for (let i = 0; i < m.length; i += MSG_STRIDE) {
    writeStringField(m[i], 'actor id');
    writeUint(m[i + 1], 'partition');
    writeVarint(handlers.get(m[i + 2] as string)!);
    writePayload(m[i + 3]);
    writeUint(m[i + 4], 'origin');
    writeUint(m[i + 5], 'ask id');
  }
}

export function encodeHello(node: string, cluster: string, partitions: number): Buffer {
  checkHelloName(node, 'node id');
  checkHelloName(cluster, 'cluster name');
  begin(KIND_HELLO, MAX_HELLO_BYTES);
  writeString(node);
  writeString(cluster);
  writeUint(partitions, 'partitions');
  return finish();
}

export function encodeBatch(m: readonly unknown[], r: readonly unknown[] = [], maxBytes = MAX_FRAME_BYTES): Buffer {
  begin(KIND_BATCH, maxBytes);
  writeMessages(m);
  if (r.length % REPLY_STRIDE !== 0) throw new FrameError(`reply array length ${r.length} is not a multiple of ${REPLY_STRIDE}`);
  writeVarint(r.length / REPLY_STRIDE);
  for (let i = 0; i < r.length; i += REPLY_STRIDE) {
    writeUint(r[i], 'ask id');
    reserve(1);
    scratch[pos++] = r[i + 1] === 1 ? 1 : 0;
    writePayload(r[i + 2]);
  }
  return finish();
}

export function encodeRedirect(epoch: number, owner: string, m: readonly unknown[], maxBytes = MAX_FRAME_BYTES): Buffer {
  begin(KIND_REDIRECT, maxBytes);
  writeUint(epoch, 'epoch');
  writeString(owner);
  writeMessages(m);
  return finish();
}

export function encodeHandOff(id: number, epoch: number, partitions: readonly number[], rows: readonly unknown[], maxBytes = MAX_FRAME_BYTES): Buffer {
  begin(KIND_HANDOFF, maxBytes);
  writeUint(id, 'hand-off id');
  writeUint(epoch, 'epoch');
  writeVarint(partitions.length);
  for (const p of partitions) writeUint(p, 'partition');
  if (rows.length % HANDOFF_ROW_STRIDE !== 0) throw new FrameError(`hand-off row array length ${rows.length} is not a multiple of ${HANDOFF_ROW_STRIDE}`);
  writeVarint(rows.length / HANDOFF_ROW_STRIDE);
  for (let i = 0; i < rows.length; i += HANDOFF_ROW_STRIDE) {
    writeStringField(rows[i], 'actor id');
    writeUint(rows[i + 1], 'partition');
    writePayload(rows[i + 2]);
  }
  return finish();
}

export function encodeHandOffAck(id: number, error = ''): Buffer {
  begin(KIND_HANDOFF_ACK, MAX_HELLO_BYTES + Buffer.byteLength(error));
  writeUint(id, 'hand-off id');
  writeString(error);
  return finish();
}

// ---- frames that must fit the limit ------------------------------------------------------------

/** A batch encoded as frames of at most the limit, and the messages and replies that cannot be sent. */
export interface BatchParts {
  frames: Buffer[];
  /** Messages (MSG_STRIDE values each) and replies (REPLY_STRIDE) that no frame can carry. */
  badM: unknown[];
  badR: unknown[];
  /** Why the first of them cannot be sent. */
  first: FrameError | undefined;
}

/**
 * For a batch encodeBatch refused: splits it in halves until each part fits (a batch of large
 * payloads), and keeps apart each message or reply that cannot be encoded on its own (too large
 * alone, or a payload v8 cannot serialize). Messages keep their order. Costs a few encodings of at
 * most the limit each; only taken when one frame does not do.
 */
export function encodeBatchParts(m: readonly unknown[], r: readonly unknown[], maxBytes = MAX_FRAME_BYTES): BatchParts {
  if (m.length % MSG_STRIDE !== 0) throw new FrameError(`message array length ${m.length} is not a multiple of ${MSG_STRIDE}`);
  if (r.length % REPLY_STRIDE !== 0) throw new FrameError(`reply array length ${r.length} is not a multiple of ${REPLY_STRIDE}`);
  const out: BatchParts = { frames: [], badM: [], badR: [], first: undefined };
  const encodePart = (pm: readonly unknown[], pr: readonly unknown[]): void => {
    try {
      out.frames.push(encodeBatch(pm, pr, maxBytes));
      return;
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      const nm = pm.length / MSG_STRIDE;
      const n = nm + pr.length / REPLY_STRIDE;
      if (n <= 1) {
        out.first ??= err;
        for (const v of pm) out.badM.push(v);
        for (const v of pr) out.badR.push(v);
        return;
      }
      // The first half of the items, messages before replies.
      const half = Math.ceil(n / 2);
      const cutM = Math.min(half, nm) * MSG_STRIDE;
      const cutR = Math.max(0, half - nm) * REPLY_STRIDE;
      encodePart(pm.slice(0, cutM), pr.slice(0, cutR));
      encodePart(pm.slice(cutM), pr.slice(cutR));
    }
  };
  encodePart(m, r);
  return out;
}

/** A hand-off encoded as frames of at most the limit, each with its own id (each is acknowledged). */
export interface HandOffParts {
  parts: { id: number; frame: Buffer }[];
  /** Rows (HANDOFF_ROW_STRIDE values each) that no frame can carry: an actor's state too large alone, or not serializable. */
  dropped: unknown[];
  first: FrameError | undefined;
}

/** Splits a hand-off's rows in halves until each part fits; every part names all `partitions`. */
export function encodeHandOffParts(nextId: () => number, epoch: number, partitions: readonly number[], rows: readonly unknown[], maxBytes = MAX_FRAME_BYTES): HandOffParts {
  if (rows.length % HANDOFF_ROW_STRIDE !== 0) throw new FrameError(`hand-off row array length ${rows.length} is not a multiple of ${HANDOFF_ROW_STRIDE}`);
  const out: HandOffParts = { parts: [], dropped: [], first: undefined };
  const encodePart = (pr: readonly unknown[]): void => {
    const id = nextId();
    try {
      out.parts.push({ id, frame: encodeHandOff(id, epoch, partitions, pr, maxBytes) });
      return;
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      const n = pr.length / HANDOFF_ROW_STRIDE;
      // Without rows, it is the partition list or an epoch that is wrong: nothing to split.
      if (n === 0) throw err;
      if (n === 1) {
        out.first ??= err;
        for (const v of pr) out.dropped.push(v);
        return;
      }
      const cut = Math.ceil(n / 2) * HANDOFF_ROW_STRIDE;
      encodePart(pr.slice(0, cut));
      encodePart(pr.slice(cut));
    }
  };
  encodePart(rows);
  return out;
}

// ---- decoding -----------------------------------------------------------------------------------

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  fail(what: string): never {
    throw new FrameError(`bad cluster frame (${this.buf.length} bytes): ${what} at byte ${this.pos}`);
  }

  byte(what: string): number {
    if (this.pos >= this.buf.length) this.fail(`truncated, expected ${what}`);
    return this.buf[this.pos++]!;
  }

  varint(what: string): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte(what);
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (!Number.isSafeInteger(result)) this.fail(`${what} is too large`);
        return result;
      }
      mul *= 0x80;
    }
    this.fail(`${what} is a varint longer than 8 bytes`);
  }

  /** A count of items of at least `minBytes` each: bounded by what is left, so a hostile count cannot allocate. */
  count(what: string, minBytes: number): number {
    const n = this.varint(what);
    if (n * minBytes > this.buf.length - this.pos) this.fail(`${what} ${n} does not fit in the ${this.buf.length - this.pos} bytes left`);
    return n;
  }

  bytes(n: number, what: string): Buffer {
    if (n > this.buf.length - this.pos) this.fail(`${what} of ${n} bytes runs past the end`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(what: string): string {
    const n = this.varint(`length of ${what}`);
    if (n > this.buf.length - this.pos) this.fail(`${what} of ${n} bytes runs past the end`);
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  payload(what: string): unknown {
    const tag = this.byte(`type of ${what}`);
    switch (tag) {
      case TAG_UNDEFINED:
        return undefined;
      case TAG_NULL:
        return null;
      case TAG_FALSE:
        return false;
      case TAG_TRUE:
        return true;
      case TAG_INT: {
        const z = this.varint(what);
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      case TAG_FLOAT:
        if (this.buf.length - this.pos < 8) this.fail(`truncated number in ${what}`);
        this.pos += 8;
        return this.buf.readDoubleLE(this.pos - 8);
      case TAG_STRING:
        return this.string(what);
      case TAG_V8: {
        const blob = this.bytes(this.varint(`length of ${what}`), what);
        try {
          return deserialize(blob);
        } catch (err) {
          this.fail(`${what} is not a valid serialized value (${(err as Error).message})`);
        }
      }
      default:
        this.fail(`unknown type tag ${tag} in ${what}`);
    }
  }

  messages(): unknown[] {
    const handlerCount = this.count('handler count', 1);
    const handlers: string[] = [];
    for (let i = 0; i < handlerCount; i++) handlers.push(this.string('handler name'));
    // A message takes at least 6 bytes (empty id, partition, handler, tag, origin, ask id).
    const n = this.count('message count', 6);
    const m = new Array<unknown>(n * MSG_STRIDE);
    for (let k = 0, i = 0; k < n; k++, i += MSG_STRIDE) {
      m[i] = this.string('actor id');
      m[i + 1] = this.varint('partition');
      const h = this.varint('handler index');
      if (h >= handlers.length) this.fail(`handler index ${h} outside the table of ${handlers.length}`);
      m[i + 2] = handlers[h];
      m[i + 3] = this.payload('payload');
      m[i + 4] = this.varint('origin');
      m[i + 5] = this.varint('ask id');
    }
    return m;
  }

  end(): void {
    if (this.pos !== this.buf.length) this.fail(`${this.buf.length - this.pos} unexpected trailing bytes`);
  }
}

function checkHelloName(s: string, what: string): void {
  const n = Buffer.byteLength(s);
  if (n === 0 || n > MAX_HELLO_NAME_BYTES) throw new FrameError(`${what} of ${n} bytes; a hello takes 1 to ${MAX_HELLO_NAME_BYTES}`);
  // Names go into logs and maps: no control characters (a forged line in a log, say).
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(s)) throw new FrameError(`${what} contains a control character`);
}

function header(buf: Buffer | Uint8Array): { r: Reader; kind: number } {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const r: Reader = new Reader(b);
  if (r.byte('magic') !== MAGIC) r.fail('not a Troupe cluster frame (bad magic byte)');
  const version = r.byte('version');
  if (version !== VERSION) r.fail(`frame version ${version}, this node speaks ${VERSION}; run one Troupe version across the cluster`);
  return { r, kind: r.byte('kind') };
}

/**
 * Decodes the first frame of a link, which must be a hello: any other kind is refused from its
 * header, its payloads untouched (no v8.deserialize of bytes from a peer not yet admitted).
 */
export function decodeHello(buf: Buffer | Uint8Array): HelloFrame {
  if (buf.byteLength > MAX_HELLO_BYTES) throw new FrameError(`first frame of ${buf.byteLength} bytes: a hello takes at most ${MAX_HELLO_BYTES}`);
  const h = header(buf);
  const r: Reader = h.r;
  const kind = h.kind;
  if (kind !== KIND_HELLO) r.fail(`the first frame on a link must be a hello, got a frame of kind ${kind}`);
  const node = r.string('node id');
  const cluster = r.string('cluster name');
  const partitions = r.varint('partitions');
  r.end();
  try {
    checkHelloName(node, 'node id');
    checkHelloName(cluster, 'cluster name');
  } catch (err) {
    r.fail((err as Error).message);
  }
  if (partitions < 1) r.fail('a hello with 0 partitions');
  return { kind: 'hello', node, cluster, partitions };
}

/** Decodes one frame; throws FrameError on anything malformed, and allocates only what the bytes can hold. */
export function decodeFrame(buf: Buffer | Uint8Array, maxBytes = MAX_FRAME_BYTES): Frame {
  if (buf.byteLength > maxBytes) throw new FrameTooLarge(`cluster frame of ${buf.byteLength} bytes exceeds the limit of ${maxBytes}`);
  const h = header(buf);
  const r: Reader = h.r;
  const kind = h.kind;
  let frame: Frame;
  switch (kind) {
    case KIND_HELLO:
      frame = { kind: 'hello', node: r.string('node id'), cluster: r.string('cluster name'), partitions: r.varint('partitions') };
      break;
    case KIND_BATCH: {
      const m = r.messages();
      const n = r.count('reply count', 3);
      const replies = new Array<unknown>(n * REPLY_STRIDE);
      for (let k = 0, i = 0; k < n; k++, i += REPLY_STRIDE) {
        replies[i] = r.varint('ask id');
        const ok = r.byte('reply status');
        if (ok > 1) r.fail(`reply status ${ok} is neither 0 nor 1`);
        replies[i + 1] = ok;
        replies[i + 2] = r.payload('reply value');
      }
      frame = { kind: 'batch', m, r: replies };
      break;
    }
    case KIND_REDIRECT:
      frame = { kind: 'redirect', epoch: r.varint('epoch'), owner: r.string('owner'), m: r.messages() };
      break;
    case KIND_HANDOFF: {
      const id = r.varint('hand-off id');
      const epoch = r.varint('epoch');
      const pc = r.count('partition count', 1);
      const partitions: number[] = [];
      for (let i = 0; i < pc; i++) partitions.push(r.varint('partition'));
      // A row takes at least 3 bytes (empty id, partition, tag).
      const n = r.count('row count', 3);
      const rows = new Array<unknown>(n * HANDOFF_ROW_STRIDE);
      for (let k = 0, i = 0; k < n; k++, i += HANDOFF_ROW_STRIDE) {
        rows[i] = r.string('actor id');
        rows[i + 1] = r.varint('partition');
        rows[i + 2] = r.payload('state');
      }
      frame = { kind: 'handoff', id, epoch, partitions, rows };
      break;
    }
    case KIND_HANDOFF_ACK:
      frame = { kind: 'handoff-ack', id: r.varint('hand-off id'), error: r.string('error') };
      break;
    default:
      r.fail(`unknown frame kind ${kind}`);
  }
  r.end();
  return frame;
}
