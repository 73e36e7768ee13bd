// The dating ports against hostile peers: sequence numbers spread up to 2^31 held in memory that
// follows the events received, and Event Listeners that connect early or extra and say nothing.

import test from 'ava';
import { connect, type Socket } from 'node:net';
import { listenForRounds } from '../../../gateways/dating/index.js';
import { SequenceBook, type PairBatch } from '../../../gateways/dating/ordering.js';
import { LIKE_LIKED, LIKE_NOT_LIKED, type LikeType } from '../../../gateways/dating/parser.js';
import { inProcessPairs, quietLog } from './support.js';

/** A small deterministic generator, so a failure replays. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function flat(batches: PairBatch[]): string {
  return batches.map((b) => `${b.lo}-${b.hi}:${b.events.join(',')}`).join(' ');
}

test('events past the dense cells wait in the far map and are ordered exactly as the dense book orders them', (t) => {
  const random = rng(7);
  const n = 20_000;
  const seqs = Array.from({ length: n }, (_, i) => i + 1);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [seqs[i], seqs[j]] = [seqs[j]!, seqs[i]!];
  }
  const dense = new SequenceBook({ maxSeq: n });
  const far = new SequenceBook({ maxSeq: n, denseFloor: 1024 });
  const out = { dense: [] as string[], far: [] as string[] };
  seqs.forEach((seq, i) => {
    const type: LikeType = random() < 0.7 ? LIKE_LIKED : LIKE_NOT_LIKED;
    const from = Math.floor(random() * 30);
    const to = Math.floor(random() * 30);
    dense.add(seq, type, from, to);
    far.add(seq, type, from, to);
    if (i % 97 === 0) {
      out.dense.push(flat(dense.advance()));
      out.far.push(flat(far.advance()));
      t.is(far.missing(), dense.missing());
    }
  });
  out.dense.push(flat(dense.advance()));
  out.far.push(flat(far.advance()));
  t.is(far.frontier, n);
  t.deepEqual(out.far, out.dense);
  t.is(far.missing(), 0);
  t.is(far.duplicates(), 0);
});

test('a sparse round, sequence numbers spread up to 2^31, takes memory for its events, not for the highest one', (t) => {
  const maxSeq = 2 ** 31 - 1;
  const random = rng(11);
  const before = process.memoryUsage();
  const book = new SequenceBook({ maxSeq });
  // About 2.7 MB of wire text: 120,000 lines of "seq|LIKE_LIKED|from|to".
  const events = 120_000;
  let highest = 0;
  for (let i = 0; i < events; i++) {
    const seq = 2 + Math.floor(random() * (maxSeq - 2));
    highest = Math.max(highest, seq);
    book.add(seq, LIKE_LIKED, i % 9000, (i * 7) % 9000);
    if (i % 1000 === 0) t.deepEqual(book.advance(), [], 'sequence number 1 never came: nothing is ordered');
  }
  const after = process.memoryUsage();
  const grown = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);
  // Heap growth counts garbage not yet collected too (about 50 MiB here, more under load): the bound
  // only has to tell memory for the events (tens of MiB) from memory for 2^31 cells (20 GiB before).
  t.true(grown < 256 * 1_048_576, `the book grew by ${Math.round(grown / 1_048_576)} MiB`);
  t.is(book.highest, highest);
  t.is(book.arrived, events);
  // Counted from what arrived, not by walking two billion cells.
  t.is(book.missing() + (events - book.duplicates()), highest);
});

function listenerSocket(t: import('ava').ExecutionContext, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
    t.teardown(() => s.destroy());
  });
}

function closedWithin(s: Socket, ms: number): Promise<{ got: string; reset: boolean } | undefined> {
  return new Promise((resolve) => {
    let got = '';
    let reset = false;
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', (err: NodeJS.ErrnoException) => (reset = err.code === 'ECONNRESET'));
    const timer = setTimeout(() => resolve(undefined), ms);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ got, reset });
    });
  });
}

async function servers(t: import('ava').ExecutionContext, earlyListenerMs: number) {
  const s = await listenForRounds({
    decider: inProcessPairs(),
    log: quietLog,
    host: '127.0.0.1',
    sourcePort: 0,
    listenerPort: 0,
    maxSeq: 1000,
    sourceIdleMs: 60_000,
    listenerWaitMs: 10_000,
    earlyListenerMs,
  });
  t.teardown(() => s.stop());
  return s;
}

test('an early Event Listener that says nothing and sees no round is read and timed out', async (t) => {
  const s = await servers(t, 300);
  const early = await listenerSocket(t, s.listenerPort);
  // Bytes it sends are read (drained), not left to make the close a reset.
  early.write('hello\n'.repeat(1000));
  const closed = await closedWithin(early, 15_000);
  t.not(closed, undefined, 'the early listener is still connected after 15 s');
  t.false(closed!.reset, 'closed, not reset');
});

test('a second early listener replaces the first, which is closed, not reset; the newer one gets the round', async (t) => {
  const s = await servers(t, 30_000);
  const first = await listenerSocket(t, s.listenerPort);
  first.write('junk\n'.repeat(500));
  const firstClosed = closedWithin(first, 15_000);
  await new Promise((r) => setTimeout(r, 100));
  const second = await listenerSocket(t, s.listenerPort);
  second.write('MATCH BEGIN\n');
  const c = await firstClosed;
  t.not(c, undefined, 'the first early listener is still connected');
  t.false(c!.reset);
  let got = '';
  second.on('data', (d) => (got += d.toString('latin1')));
  const source = await listenerSocket(t, s.sourcePort);
  source.end('EVENT BEGIN\n1|LIKE_LIKED|1|2\n2|LIKE_LIKED|2|1\nEVENT END\n');
  const deadline = Date.now() + 15_000;
  while (!got.includes('2\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.is(got, '2\n');
});

test('an extra listener during a round is read and closed, not reset', async (t) => {
  const s = await servers(t, 30_000);
  const real = await listenerSocket(t, s.listenerPort);
  real.write('MATCH BEGIN\n');
  const source = await listenerSocket(t, s.sourcePort);
  source.write('EVENT BEGIN\n1|LIKE_LIKED|1|2\n');
  const deadline = Date.now() + 15_000;
  while (!s.current?.hasListener && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const extra = await listenerSocket(t, s.listenerPort);
  extra.write('MATCH BEGIN\n'.repeat(2000));
  const c = await closedWithin(extra, 15_000);
  t.not(c, undefined);
  t.false(c!.reset, 'closed, not reset');
  t.is(c!.got, '');
});
