// The cluster frame codec: batches, replies, redirects and hellos round-trip; malformed, truncated,
// oversized and hostile frames are refused with a FrameError, never a crash or a huge allocation.

import test from 'ava';
import fc from 'fast-check';
import { decodeFrame, encodeBatch, encodeHandOff, encodeHandOffAck, encodeHello, encodeRedirect, FrameError, MAX_FRAME_BYTES } from '../../runtime/cluster/frame-codec.js';

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
