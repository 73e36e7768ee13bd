// The cluster frame codec: batches, replies, redirects and hellos round-trip; malformed, truncated,
// oversized and hostile frames are refused with a FrameError, never a crash or a huge allocation;
// a link's first frame is decoded as a hello only; batches and hand-offs are split to fit the limit.

import test from 'ava';
import fc from 'fast-check';
import {
  decodeFrame,
  decodeHello,
  encodeBatch,
  encodeBatchParts,
  encodeHandOff,
  encodeHandOffAck,
  encodeHandOffParts,
  encodeHello,
  encodeRedirect,
  FrameError,
  FrameTooLarge,
  MAX_FRAME_BYTES,
  MAX_HELLO_BYTES,
} from '../../runtime/cluster/frame-codec.js';
import { DEFAULT_MAX_FRAME_BYTES, frameLimit, grpcMessageLimit } from '../../runtime/cluster/frame-limit.js';

const payloads: unknown[] = [
  undefined, null, true, false, 0, 1, -1, 127, 128, -129, 2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER,
  -0, 0.5, NaN, Infinity, -Infinity, 2 ** 60, '', 'plain', 'ünïcødé 🎭', { n: 1, nested: [1, 'two', { three: 3 }] },
  [1, 2, 3], new Map([['k', 1]]), new Set([1]), new Uint8Array([1, 2, 3]), new Date(0), 10n,
];

test('a batch of messages and replies round-trips, payloads of every kind included', (t) => {
  const m: unknown[] = [];
  payloads.forEach((p, i) => m.push(`counter/${i}`, i, i % 2 ? 'add' : 'get', p, i % 3, i * 1000));
  const r: unknown[] = [];
  payloads.forEach((p, i) => r.push(i + 1, i % 2, p));
  r.push(99, 0, { message: 'boom', code: 'E_BOOM', name: 'ActorFailure' });
  const frame = decodeFrame(encodeBatch(m, r));
  t.is(frame.kind, 'batch');
  if (frame.kind !== 'batch') return;
  t.deepEqual(frame.m, m);
  t.deepEqual(frame.r, r);
  t.true(Object.is((frame.m[6 * payloads.findIndex((p) => Object.is(p, -0)) + 3]), -0));
});

test('redirect, hello, hand-off and acknowledgement frames round-trip; truncated hand-offs are refused', (t) => {
  const m = ['cart/1', 17, 'add', { sku: 'x' }, 1, 5, 'cart/2', 18, 'get', undefined, 0, 0];
  t.deepEqual(decodeFrame(encodeRedirect(9, 'node-b', m)), { kind: 'redirect', epoch: 9, owner: 'node-b', m });
  t.deepEqual(decodeFrame(encodeHello('node-a', 'prod', 1024)), { kind: 'hello', node: 'node-a', cluster: 'prod', partitions: 1024 });
  t.deepEqual(decodeFrame(encodeBatch([], [])), { kind: 'batch', m: [], r: [] });
  const rows = ['cart/1', 4, { items: [1] }, 'cart/2', 9, new Map([['a', 1]])];
  t.deepEqual(decodeFrame(encodeHandOff(3, 8, [4, 9], rows)), { kind: 'handoff', id: 3, epoch: 8, partitions: [4, 9], rows });
  t.deepEqual(decodeFrame(encodeHandOffAck(3)), { kind: 'handoff-ack', id: 3, error: '' });
  t.deepEqual(decodeFrame(encodeHandOffAck(4, 'disk full')), { kind: 'handoff-ack', id: 4, error: 'disk full' });
  const full = encodeHandOff(3, 8, [4, 9], rows);
  for (let n = 0; n < full.length; n++) t.throws(() => decodeFrame(full.subarray(0, n)), { instanceOf: FrameError });
});

test('the frame is compact: a tell with a small payload costs little more than its actor id', (t) => {
  const m: unknown[] = [];
  for (let i = 0; i < 1000; i++) m.push(`user/${100000 + i}`, i % 1024, 'ping', i, 0, 0);
  const bytes = encodeBatch(m).length;
  t.log(`1000 tells: ${bytes} bytes (${(bytes / 1000).toFixed(1)} per message)`);
  t.true(bytes < 1000 * 24);
});

test('property: any batch of plain values round-trips', (t) => {
  const value = fc.oneof(fc.integer(), fc.double(), fc.string(), fc.boolean(), fc.constant(null), fc.dictionary(fc.string(), fc.integer(), { noNullPrototype: true }));
  const message = fc.tuple(fc.string(), fc.nat(1 << 20), fc.string({ minLength: 1 }), value, fc.nat(300), fc.maxSafeNat());
  fc.assert(
    fc.property(fc.array(message, { maxLength: 30 }), (msgs) => {
      const m = msgs.flat();
      const f = decodeFrame(encodeBatch(m));
      return f.kind === 'batch' && fc.stringify(f.m) === fc.stringify(m);
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('every truncation of a valid frame is refused with a FrameError', (t) => {
  const full = encodeBatch(['a/1', 3, 'h', { x: [1, 2] }, 1, 7, 'a/2', 4, 'h', 'text', 0, 0], [7, 1, 'ok']);
  for (let n = 0; n < full.length; n++) {
    t.throws(() => decodeFrame(full.subarray(0, n)), { instanceOf: FrameError }, `prefix of ${n} bytes`);
  }
  t.throws(() => decodeFrame(Buffer.concat([full, Buffer.from([0])])), { instanceOf: FrameError, message: /trailing/ });
});

test('wrong magic, version or kind, and hostile counts are refused with a clear message', (t) => {
  t.throws(() => decodeFrame(Buffer.from('GET / HTTP/1.1\r\n')), { instanceOf: FrameError, message: /not a Troupe cluster frame/ });
  t.throws(() => decodeFrame(Buffer.from([0x54, 9, 2])), { instanceOf: FrameError, message: /version 9/ });
  t.throws(() => decodeFrame(Buffer.from([0x54, 1, 77])), { instanceOf: FrameError, message: /unknown frame kind 77/ });
  // A batch claiming 2^50 handlers, and one claiming 2^40 messages, in a few bytes: refused before any allocation.
  t.throws(() => decodeFrame(Buffer.from([0x54, 1, 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])), { instanceOf: FrameError, message: /handler count/ });
  t.throws(() => decodeFrame(Buffer.from([0x54, 1, 2, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20])), { instanceOf: FrameError, message: /message count/ });
  t.throws(() => decodeFrame(Buffer.from([0x54, 1, 2, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80])), { instanceOf: FrameError, message: /longer than 8 bytes/ });
  // Handler index outside the table, bad reply status, unknown payload tag, corrupt serialized value.
  t.throws(() => decodeFrame(Buffer.from([0x54, 1, 2, 0, 1, 0, 0, 5, 0, 0, 0])), { instanceOf: FrameError, message: /handler index 5/ });
  t.throws(() => decodeFrame(Buffer.from([0x54, 1, 2, 0, 0, 1, 1, 7, 0])), { instanceOf: FrameError, message: /reply status 7/ });
  t.throws(() => decodeFrame(Buffer.from([0x54, 1, 2, 0, 0, 1, 1, 1, 99])), { instanceOf: FrameError, message: /unknown type tag 99/ });
  t.throws(() => decodeFrame(Buffer.from([0x54, 1, 2, 0, 0, 1, 1, 1, 7, 3, 0xff, 0x0f, 0x6f])), { instanceOf: FrameError, message: /not a valid serialized value/ });
  t.throws(() => decodeFrame(Buffer.alloc(MAX_FRAME_BYTES + 1)), { instanceOf: FrameError, message: /exceeds the limit/ });
});

test('property: random bytes never decode into anything but a frame or a FrameError', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, withHeader) => {
      const buf = withHeader ? Buffer.concat([Buffer.from([0x54, 1, 2]), bytes]) : Buffer.from(bytes);
      try {
        decodeFrame(buf);
        return true;
      } catch (err) {
        return err instanceof FrameError;
      }
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('messages that cannot be sent are refused at encoding, with what is wrong', (t) => {
  t.throws(() => encodeBatch(['a/1', 1, 'h', () => 1, 0, 0]), { instanceOf: FrameError, message: /cannot be sent to another node/ });
  t.throws(() => encodeBatch(['a/1', -1, 'h', 1, 0, 0]), { instanceOf: FrameError, message: /partition must be/ });
  t.throws(() => encodeBatch(['a/1', 1, 42, 1, 0, 0]), { instanceOf: FrameError, message: /handler of message 0/ });
  t.throws(() => encodeBatch(['a/1', 1, 'h']), { instanceOf: FrameError, message: /multiple of 6/ });
  t.throws(() => encodeBatch([7, 1, 'h', 1, 0, 0]), { instanceOf: FrameError, message: /actor id must be a string/ });
});

test('a hello decodes with decodeHello; every other kind is refused from its header, its payloads untouched', (t) => {
  t.deepEqual(decodeHello(encodeHello('node-a-mx7-abc123', 'prod', 1024)), { kind: 'hello', node: 'node-a-mx7-abc123', cluster: 'prod', partitions: 1024 });
  // A batch whose v8 payload is corrupt: decodeFrame reaches the payload and fails there; decodeHello never does.
  const batch = Buffer.from([0x54, 1, 2, 0, 0, 1, 1, 1, 7, 3, 0xff, 0x0f, 0x6f]);
  t.throws(() => decodeFrame(batch), { instanceOf: FrameError, message: /not a valid serialized value/ });
  t.throws(() => decodeHello(batch), { instanceOf: FrameError, message: /must be a hello, got a frame of kind 2/ });
  for (const other of [encodeBatch(['a/1', 1, 'h', { x: 1 }, 0, 0]), encodeRedirect(1, 'b', []), encodeHandOff(1, 2, [3], ['a/1', 3, new Map()]), encodeHandOffAck(1)]) {
    t.throws(() => decodeHello(other), { instanceOf: FrameError, message: /must be a hello/ });
  }
});

test('hostile and malformed hellos are refused with a FrameError', (t) => {
  const hello = (node: Buffer, cluster: Buffer, tail: number[] = [0x80, 0x08]): Buffer =>
    Buffer.concat([Buffer.from([0x54, 1, 1, node.length]), node, Buffer.from([cluster.length]), cluster, Buffer.from(tail)]);
  const ok = hello(Buffer.from('n1'), Buffer.from('c1'));
  t.deepEqual(decodeHello(ok), { kind: 'hello', node: 'n1', cluster: 'c1', partitions: 1024 });
  for (let n = 0; n < ok.length; n++) t.throws(() => decodeHello(ok.subarray(0, n)), { instanceOf: FrameError }, `prefix of ${n} bytes`);
  t.throws(() => decodeHello(Buffer.concat([ok, Buffer.from([0])])), { instanceOf: FrameError, message: /trailing/ });
  t.throws(() => decodeHello(Buffer.from('GET / HTTP/1.1\r\n')), { instanceOf: FrameError, message: /not a Troupe cluster frame/ });
  t.throws(() => decodeHello(Buffer.from([0x54, 2, 1])), { instanceOf: FrameError, message: /version 2/ });
  t.throws(() => decodeHello(hello(Buffer.alloc(0), Buffer.from('c1'))), { instanceOf: FrameError, message: /node id of 0 bytes/ });
  t.throws(() => decodeHello(hello(Buffer.from('evil\ninjected log line'), Buffer.from('c1'))), { instanceOf: FrameError, message: /control character/ });
  t.throws(() => decodeHello(hello(Buffer.from('n1'), Buffer.from('c\u0000'))), { instanceOf: FrameError, message: /cluster name contains a control character/ });
  t.throws(() => decodeHello(hello(Buffer.from('n1'), Buffer.from('c1'), [0])), { instanceOf: FrameError, message: /0 partitions/ });
  // A node id of 300 bytes (its length a two-byte varint).
  const long = Buffer.concat([Buffer.from([0x54, 1, 1, 0xac, 0x02]), Buffer.alloc(300, 0x61), Buffer.from([2, 0x63, 0x31, 1])]);
  t.throws(() => decodeHello(long), { instanceOf: FrameError, message: /node id of 300 bytes/ });
  // A hello claiming a 2^40-byte node id, and one far larger than any hello: refused before reading on.
  t.throws(() => decodeHello(Buffer.from([0x54, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20])), { instanceOf: FrameError, message: /runs past the end/ });
  t.throws(() => decodeHello(Buffer.alloc(MAX_HELLO_BYTES + 1, 0x54)), { instanceOf: FrameError, message: /a hello takes at most/ });
  t.throws(() => encodeHello('x'.repeat(256), 'c1', 1), { instanceOf: FrameError, message: /node id of 256 bytes/ });
});

test('property: random bytes after a hello header never decode into anything but a hello or a FrameError', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, withHeader) => {
      const buf = withHeader ? Buffer.concat([Buffer.from([0x54, 1, 1]), bytes]) : Buffer.from(bytes);
      try {
        return decodeHello(buf).kind === 'hello';
      } catch (err) {
        return err instanceof FrameError;
      }
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('frames over the limit given are refused on both sides; the limit is checked like the setting', (t) => {
  const m = ['a/1', 1, 'h', 'x'.repeat(3 * 1_048_576), 0, 0];
  t.throws(() => encodeBatch(m, [], 2 * 1_048_576), { instanceOf: FrameTooLarge, message: /cluster frame limit/ });
  const big = encodeBatch(m, [], 4 * 1_048_576);
  t.throws(() => decodeFrame(big, 2 * 1_048_576), { instanceOf: FrameTooLarge, message: /exceeds the limit of 2097152/ });
  t.is(decodeFrame(big, 4 * 1_048_576).kind, 'batch');
  t.is(MAX_FRAME_BYTES, DEFAULT_MAX_FRAME_BYTES);
  t.is(frameLimit(undefined), 16 * 1_048_576);
  t.throws(() => frameLimit(1000), { instanceOf: RangeError, message: /--cluster-max-frame\) is 1000; give a whole number of bytes from 2097152/ });
  t.true(grpcMessageLimit(DEFAULT_MAX_FRAME_BYTES) > DEFAULT_MAX_FRAME_BYTES);
});

test('a batch that does not fit one frame is split into frames that do, in order; what fits none is given back', (t) => {
  const limit = 2 * 1_048_576;
  const m: unknown[] = [];
  for (let i = 0; i < 1000; i++) m.push(`a/${i}`, i % 64, 'put', 'v'.repeat(8 * 1024), 1, i + 1);
  m.push('a/huge', 3, 'put', 'h'.repeat(limit), 1, 5000, 'a/fn', 4, 'put', () => 1, 1, 5001);
  const r: unknown[] = [];
  for (let i = 0; i < 100; i++) r.push(i + 1, 1, 'r'.repeat(4096));
  const parts = encodeBatchParts(m, r, limit);
  t.true(parts.frames.length >= 4, `${parts.frames.length} frames`);
  const decoded = parts.frames.map((f) => decodeFrame(f, limit));
  const ids = decoded.flatMap((f) => (f.kind === 'batch' ? f.m.filter((_, i) => i % 6 === 0) : []));
  t.deepEqual(ids, Array.from({ length: 1000 }, (_, i) => `a/${i}`));
  t.is(decoded.flatMap((f) => (f.kind === 'batch' ? f.r : [])).length, 300);
  t.deepEqual(parts.badM.filter((_, i) => i % 6 === 0), ['a/huge', 'a/fn']);
  t.true(parts.first instanceof FrameError);

  const rows: unknown[] = [];
  for (let i = 0; i < 40; i++) rows.push(`cart/${i}`, i % 8, { blob: 'b'.repeat(128 * 1024) });
  rows.push('cart/huge', 1, { blob: 'B'.repeat(limit) });
  let id = 10;
  const h = encodeHandOffParts(() => ++id, 7, [0, 1, 2, 3, 4, 5, 6, 7], rows, limit);
  t.true(h.parts.length >= 3);
  t.deepEqual(new Set(h.parts.map((p) => p.id)).size, h.parts.length, 'each part has its own id');
  const shipped = h.parts.flatMap(({ id: pid, frame }) => {
    const f = decodeFrame(frame, limit);
    return f.kind === 'handoff' && f.id === pid && f.epoch === 7 && f.partitions.length === 8 ? f.rows.filter((_, i) => i % 3 === 0) : ['bad part'];
  });
  t.deepEqual(shipped, Array.from({ length: 40 }, (_, i) => `cart/${i}`));
  t.deepEqual(h.dropped[0], 'cart/huge');
});

test('the largest real frames fit the default limit: a flush of 4096 tells, a 1 MiB events body in one ask', (t) => {
  const tells: unknown[] = [];
  for (let i = 0; i < 4096; i++) tells.push(`cell/k${i}`, i % 1024, 'set', { v: i, at: 1_764_000_000_000 + i }, 0, 0);
  const flush = encodeBatch(tells).length;
  // An events ask carries at most one request body's events (--events-max-body-bytes, 1 MiB by default).
  const events = Array.from({ length: 4000 }, (_, i) => ({ id: `e-${i}-0123456789abcdef`, type: 'purchase', at: 1_764_000_000_000 + i, amount: i, sku: `sku-${i % 50}`, props: { plan: 'pro', source: 'web' } }));
  const ask = encodeBatch(['user/u1', 7, 'recordEvents', { events }, 1, 1]).length;
  t.log(`4096 tells: ${(flush / 1024).toFixed(0)} KiB; a recordEvents ask of 4,000 events: ${(ask / 1024).toFixed(0)} KiB; limit ${DEFAULT_MAX_FRAME_BYTES / 1_048_576} MiB`);
  t.true(flush < DEFAULT_MAX_FRAME_BYTES / 16);
  t.true(ask < DEFAULT_MAX_FRAME_BYTES / 4);
});
