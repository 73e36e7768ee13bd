// `troupe node --otlp-endpoint`: a caller's trace goes on through the gateways into the actors.
// A carts AddItem with a sampled `traceparent` in its metadata, and an events POST with one in its
// headers, each leave one connected trace in a stand-in OTLP collector: the gateway's SERVER span,
// the ask, the actor's turn in a shard (and for events, the queue hop: the worker's CONSUMER span
// continues the POST's trace). Requests without a traceparent, at ratio 0, leave nothing.

import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { signToken } from '../../gateways/carts/auth.js';
import { serviceOf } from '../../gateways/carts/protos.js';
import { OtlpReceiver, type ReceivedSpan } from '../runtime/otlp-receiver.js';
import { eventually } from '../runtime/helpers.js';
import { tempDir } from '../common.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;
const SECRET = 'tracing-test-secret-0123456789abcdef';
const SUMMARY_TOKEN = 'tracing-test-summary-token-0123456789';

function call<R>(client: grpc.Client, method: string, request: unknown, metadata: grpc.Metadata): Promise<R> {
  return new Promise((resolve, reject) => (client as any)[method](request, metadata, (err: Error | null, reply: R) => (err ? reject(err) : resolve(reply))));
}

function traceparent(): { header: string; traceId: string; spanId: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { header: `00-${traceId}-${spanId}-01`, traceId, spanId };
}

/** The span of `spans` named `name`, checked to be the only one. */
function one(spans: ReceivedSpan[], name: string): ReceivedSpan {
  const found = spans.filter((s) => s.name === name);
  if (found.length !== 1) throw new Error(`expected one span ${name}; the trace has: ${spans.map((s) => s.name).join(', ')}`);
  return found[0]!;
}

test('a traced carts call and a traced events POST are followed through the gateways, the queue and the actors', async (t) => {
  const receiver = await OtlpReceiver.start();
  const dataDir = tempDir('troupe-tracing-');
  const summaryTokenFile = join(dataDir, 'summary-token');
  writeFileSync(summaryTokenFile, SUMMARY_TOKEN, { mode: 0o600 });
  const child = spawn(
    process.execPath,
    [
      TROUPE, 'node', '--host', '127.0.0.1', '--data-dir', dataDir, '--shards', '2', '--log-level', 'warn',
      '--gateways', 'carts,events', '--carts-secret', SECRET, '--events-summary-token-file', summaryTokenFile,
      '--otlp-endpoint', receiver.endpoint, '--trace-sample-ratio', '0',
      ...['carts-port', 'events-port', 'cluster-port', 'ops-port'].flatMap((s) => [`--${s}`, '0']),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const clients: grpc.Client[] = [];
  try {
    t.true(await eventually(() => /events\.http/.test(stderr) || child.exitCode !== null, 60_000), stderr);
    const cartsPort = Number(/troupe:\s+carts\.grpc\s+127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
    const eventsPort = Number(/troupe:\s+events\.http\s+127\.0\.0\.1:(\d+)/.exec(stderr)![1]);

    // Carts: an item (admin), then AddItem with the caller's trace.
    const items = new (serviceOf('item', 'Item'))(`127.0.0.1:${cartsPort}`, grpc.credentials.createInsecure());
    const carts = new (serviceOf('cart', 'Cart'))(`127.0.0.1:${cartsPort}`, grpc.credentials.createInsecure());
    clients.push(items, carts);
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${signToken(SECRET, randomUUID(), { roles: ['admin'] })}`);
    const item = await call<{ uuid: string }>(items, 'Create', { name: 'traced', price: 2.5 }, md);
    const cartTrace = traceparent();
    const traced = md.clone();
    traced.set('traceparent', cartTrace.header);
    const cartUuid = randomUUID();
    await call(carts, 'AddItem', { cart_uuid: cartUuid, item_uuid: item.uuid, quantity: 2 }, traced);
    // The same call without a traceparent: ratio 0, so no trace.
    await call(carts, 'AddItem', { cart_uuid: cartUuid, item_uuid: item.uuid, quantity: 1 }, md);

    // Events: a batch POST with the caller's trace, then wait until the user's aggregate has it.
    const eventsTrace = traceparent();
    const user = `traced-${randomUUID()}`;
    const post = await fetch(`http://127.0.0.1:${eventsPort}/events/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: eventsTrace.header },
      body: JSON.stringify({ events: [{ id: randomUUID(), type: 'user_action', source: 'web', user_id: user, data: { action: 'click' } }] }),
    });
    t.is(post.status, 202);
    t.true(
      await eventually(async () => {
        const r = await fetch(`http://127.0.0.1:${eventsPort}/users/${user}/summary`, { headers: { authorization: `Bearer ${SUMMARY_TOKEN}` } }).catch(() => undefined);
        return r?.status === 200 && ((await r.json()) as { events?: number }).events === 1;
      }, 20_000),
      'the event reached the user actor',
    );

    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    t.is(code, 0, stderr);

    // Every thread sends its last spans as the node stops.
    const cartSpans = receiver.trace(cartTrace.traceId);
    const server = one(cartSpans, 'cart.Cart/AddItem');
    t.is(server.kind, 2);
    t.is(server.parentSpanId, cartTrace.spanId, "the gateway's span continues the caller's");
    t.is(server.attributes['rpc.system'], 'grpc');
    const ask = one(cartSpans, 'ask cart.apply');
    t.is(ask.parentSpanId, server.spanId);
    const turn = one(cartSpans, 'cart.apply');
    t.is(turn.parentSpanId, ask.spanId);
    t.regex(String(turn.resource['troupe.thread']), /^shard-\d$/);
    t.is(turn.attributes['troupe.actor'], `cart/${cartUuid}`);

    const eventSpans = receiver.trace(eventsTrace.traceId);
    const postSpan = one(eventSpans, 'POST /events/batch');
    t.is(postSpan.parentSpanId, eventsTrace.spanId);
    const processSpan = one(eventSpans, 'events.process');
    t.is(processSpan.kind, 5);
    t.is(processSpan.parentSpanId, postSpan.spanId, 'the worker goes on with the trace the queued batch carried');
    t.is(one(eventSpans, 'events.enrich').parentSpanId, processSpan.spanId);
    t.is(one(eventSpans, 'events.store').parentSpanId, processSpan.spanId);
    const record = one(eventSpans, 'ask user.recordEvents');
    t.is(record.parentSpanId, processSpan.spanId);
    t.is(one(eventSpans, 'user.recordEvents').parentSpanId, record.spanId);

    const others = receiver.spans.filter((s) => s.traceId !== cartTrace.traceId && s.traceId !== eventsTrace.traceId);
    t.deepEqual(
      others.map((s) => s.name),
      [],
      'at ratio 0 nothing else was traced (item creation and the untraced AddItem included)',
    );
  } finally {
    for (const c of clients) c.close();
    if (child.exitCode === null) child.kill('SIGKILL');
    await receiver.close();
  }
});
