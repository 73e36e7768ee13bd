// OpenTelemetry traces follow a request through every actor hop: from a span on the main thread
// (a gateway's) through an ask into one shard, an ask from that actor into another shard, and a
// tell, each a span of the same trace with the right parent, exported by each thread over OTLP.
// Unsampled requests leave no spans past their own, a caller's traceparent is continued, and a
// shard that does not record still hands its handlers their own payloads.

import test from 'ava';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { activeTraceparent, currentTrace, flushTracing, inServerSpan, inTrace, partitionOf, startTracing, stopTracing, type TroupeNode } from '../../runtime/index.js';
import { OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';
import { eventually, testNode } from './helpers.js';

const PARTITIONS = 64;
const SERVER = 2;
const CLIENT = 3;
const CONSUMER = 5;

/** A counter key whose actor lives on shard `shard` of 2. */
function keyOnShard(shard: number, prefix: string): string {
  for (let i = 0; ; i++) {
    const key = `${prefix}-${i}`;
    if (partitionOf(`counter/${key}`, PARTITIONS) % 2 === shard) return key;
  }
}

/** Runs `body` with a node tracing at `sampleRatio` into a fresh receiver; stops both after. */
async function withTracedNode(sampleRatio: number, body: (node: TroupeNode, receiver: OtlpReceiver) => Promise<void>): Promise<void> {
  const receiver = await OtlpReceiver.start();
  try {
    const node = await testNode({ partitions: PARTITIONS, tracing: { endpoint: receiver.endpoint, sampleRatio, exportDelayMs: 50 } });
    try {
      await body(node, receiver);
    } finally {
      await node.stop();
    }
  } finally {
    await receiver.close();
  }
}

function only(spans: ReceivedSpan[], name: string): ReceivedSpan {
  const found = spans.filter((s) => s.name === name);
  if (found.length !== 1) throw new Error(`expected one span ${name}, got ${found.length}: ${spans.map((s) => s.name).join(', ')}`);
  return found[0]!;
}

test.serial('a traced request is followed through an ask, a second ask to another shard and a tell', async (t) => {
  await withTracedNode(1, async (node, receiver) => {
    const [a, b, c] = [keyOnShard(0, 'a'), keyOnShard(1, 'b'), keyOnShard(1, 'c')];
    let traceparent: string | undefined;
    const total = await inServerSpan('test.request', undefined, { 'test.case': 'hops' }, async () => {
      traceparent = activeTraceparent();
      const kept = currentTrace(); // the span is active until the first await; kept, it goes on after
      const n = await node.ref('counter', a).ask('forward', { to: b, by: 2 });
      t.is(activeTraceparent(), undefined, 'after an await the span is no longer active by itself');
      inTrace(kept, () => node.ref('counter', a).tell('tellOther', { to: c, by: 5 }));
      return n;
    });
    t.is(total, 2, 'the handler got its own payload, not the trace wrapped around it');
    t.true(await eventually(async () => (await node.ref('counter', c).ask('get')) === 5), 'the tell went on to c');
    t.regex(traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const traceId = traceparent!.split('-')[1]!;
    await node.stop();
    t.true(await eventually(() => receiver.trace(traceId).length >= 7, 5000), `spans: ${receiver.trace(traceId).map((s) => s.name).join(', ')}`);
    const spans = receiver.trace(traceId);

    const root = only(spans, 'test.request');
    t.is(root.kind, SERVER);
    t.is(root.parentSpanId, undefined);
    t.is(root.resource['troupe.thread'], 'main');
    const asks = spans.filter((s) => s.name === 'ask counter.forward');
    t.is(asks.length, 1);
    t.is(asks[0]!.kind, CLIENT);
    t.is(asks[0]!.parentSpanId, root.spanId);
    t.is(asks[0]!.attributes['troupe.actor'], `counter/${a}`);

    const forward = only(spans, 'counter.forward');
    t.is(forward.kind, SERVER);
    t.is(forward.parentSpanId, asks[0]!.spanId);
    t.is(forward.resource['troupe.thread'], 'shard-0');
    t.is(forward.attributes['troupe.actor'], `counter/${a}`);
    t.is(forward.attributes['troupe.shard'], 0);
    t.is(forward.resource['troupe.node'], node.nodeId);

    const innerAsk = only(spans, 'ask counter.add');
    t.is(innerAsk.parentSpanId, forward.spanId, 'the ask made by the actor is a child of its turn');
    t.is(innerAsk.resource['troupe.thread'], 'shard-0');
    const adds = spans.filter((s) => s.name === 'counter.add');
    const addOnB = adds.find((s) => s.attributes['troupe.actor'] === `counter/${b}`)!;
    t.truthy(addOnB);
    t.is(addOnB.parentSpanId, innerAsk.spanId);
    t.is(addOnB.resource['troupe.thread'], 'shard-1');
    t.is(addOnB.attributes['troupe.durable_change'], true);

    // The tell: main thread -> a (consumer turn) -> c (consumer turn).
    const tellOther = only(spans, 'counter.tellOther');
    t.is(tellOther.kind, CONSUMER);
    t.is(tellOther.parentSpanId, root.spanId);
    const addOnC = adds.find((s) => s.attributes['troupe.actor'] === `counter/${c}`)!;
    t.truthy(addOnC);
    t.is(addOnC.kind, CONSUMER);
    t.is(addOnC.parentSpanId, tellOther.spanId);
  });
});

test.serial("a failed turn's span and its ask's span say so", async (t) => {
  await withTracedNode(1, async (node, receiver) => {
    let traceparent: string | undefined;
    const err = await inServerSpan('test.failing', undefined, {}, async () => {
      traceparent = activeTraceparent();
      return node.ref('counter', 'x').ask('addThenFail', 3).then(
        () => undefined,
        (e: Error) => e,
      );
    });
    t.regex(err?.message ?? '', /refusing to add 3/);
    const traceId = traceparent!.split('-')[1]!;
    await node.stop();
    t.true(await eventually(() => receiver.trace(traceId).length >= 3, 5000));
    const spans = receiver.trace(traceId);
    t.is(only(spans, 'counter.addThenFail').status, 2);
    t.is(only(spans, 'ask counter.addThenFail').status, 2);
  });
});

test.serial("a caller's sampled traceparent is continued; an unsampled request leaves no actor spans", async (t) => {
  // Ratio 0: nothing starts a trace of its own, but a caller's sampled one is followed.
  await withTracedNode(0, async (node, receiver) => {
    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    await inServerSpan('test.continued', `00-${callerTrace}-${callerSpan}-01`, {}, () => node.ref('counter', 'k').ask('add', 1));
    let unsampled = 'not read' as string | undefined;
    await inServerSpan('test.unsampled', undefined, {}, async () => {
      unsampled = activeTraceparent();
      await node.ref('counter', 'k').ask('add', 1);
      node.ref('counter', 'k').tell('add', 1);
    });
    t.is(unsampled, undefined, 'an unsampled request carries no traceparent');
    t.is(await node.ref('counter', 'k').ask('get'), 3);
    await node.stop();
    t.true(await eventually(() => receiver.trace(callerTrace).length >= 3, 5000));
    const spans = receiver.trace(callerTrace);
    t.is(only(spans, 'test.continued').parentSpanId, callerSpan);
    t.is(only(spans, 'counter.add').parentSpanId, only(spans, 'ask counter.add').spanId);
    t.deepEqual(
      receiver.spans.filter((s) => s.traceId !== callerTrace).map((s) => s.name),
      [],
      'the unsampled request recorded nothing',
    );
  });
});

test.serial("a caller's traceparent that is malformed, hostile or oversized starts a trace of our own; an unsampled one is followed: no spans", async (t) => {
  await withTracedNode(1, async (node, receiver) => {
    const bad = [
      'garbage',
      '',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7', // no flags
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // all-zero trace id
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // all-zero parent id
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // forbidden version
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', // version 00 has no more fields
      '00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01', // not hex
      `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01${'x'.repeat(100_000)}`, // oversized
      '00-\u0000\n-\r-01',
    ];
    for (const tp of bad) t.is(await inServerSpan('test.bad', tp, {}, () => node.ref('counter', 'bad').ask('add', 1)), bad.indexOf(tp) + 1);
    await inServerSpan('test.unsampled-caller', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', {}, () => node.ref('counter', 'bad').ask('add', 1));
    await node.stop();
    t.true(await eventually(() => receiver.spans.filter((s) => s.name === 'test.bad').length === bad.length, 5000));
    for (const s of receiver.spans.filter((x) => x.name === 'test.bad')) t.is(s.parentSpanId, undefined, 'a trace of our own');
    t.is(new Set(receiver.spans.filter((s) => s.name === 'test.bad').map((s) => s.traceId)).size, bad.length);
    t.false(receiver.spans.some((s) => s.traceId === '4bf92f3577b34da6a3ce929d0e0e4736'), "the unsampled caller's trace is not recorded");
  });
});

test.serial('shards that do not record still unwrap traced messages', async (t) => {
  // The main thread records (as a node with tracing would), the shards were started without it:
  // a mixed cluster, or a node restarted with tracing switched off while peers still send traces.
  const exporter = new InMemorySpanExporter();
  t.true(startTracing({ endpoint: 'http://127.0.0.1:1/unused', sampleRatio: 1, exportDelayMs: 10 }, exporter));
  const node = await testNode({ partitions: PARTITIONS });
  try {
    const [a, b] = [keyOnShard(0, 'u'), keyOnShard(1, 'v')];
    const n = await inServerSpan('test.mixed', undefined, {}, async () => {
      node.ref('counter', b).tell('add', 4);
      return node.ref('counter', a).ask('forward', { to: b, by: 2 });
    });
    t.is(n, 6, 'both handlers got their own payloads');
    await flushTracing();
    t.deepEqual(
      exporter
        .getFinishedSpans()
        .map((s) => s.name)
        .sort(),
      ['ask counter.forward', 'test.mixed'],
      'the main thread recorded its spans; the shards none',
    );
  } finally {
    await node.stop();
    await stopTracing();
  }
});
