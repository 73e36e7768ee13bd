// Every rule at the door: field validation (each bad field named), batch count, body size, content
// type, JSON syntax, methods and paths, and hostile input (deep nesting, lies in Content-Length,
// endless bodies, prototype keys). The door runs here with stand-ins behind it.

import test from 'ava';
import { request } from 'node:http';
import { acceptBatch, acceptEvent, nestedDeeperThan, parseRfc3339, type AcceptedEvent } from '../../../gateways/events/event.js';
import { checkBody } from '../../../gateways/events/request-check.js';
import { startDoor } from './helpers.js';

process.env.TROUPE_LOG_LEVEL ??= 'silent';
const NOW = Date.parse('2026-11-22T12:00:00Z');
const valid = { type: 'user_action', source: 'web', user_id: 'u1', data: { action: 'click' } };

test('a valid event gets a generated UUID and the receipt time', (t) => {
  const { event, problems } = acceptEvent(valid, NOW);
  t.deepEqual(problems, []);
  t.regex(event!.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.is(event!.timestamp, '2026-11-22T12:00:00.000Z');
  t.is(acceptEvent(valid, NOW).event!.id === event!.id, false);
});

test('a given id (any case) and timestamp (any offset) are kept, normalized', (t) => {
  const { event } = acceptEvent({ ...valid, id: '3F2A9C1E-0B6D-4C8E-9A51-2F0E7D3B6A10', timestamp: '2026-01-02T03:04:05.123456+02:00' }, NOW);
  t.is(event!.id, '3f2a9c1e-0b6d-4c8e-9a51-2f0e7d3b6a10');
  t.is(event!.timestamp, '2026-01-02T01:04:05.123Z');
});

test('every bad field is named with why, all at once', (t) => {
  const { event, problems } = acceptEvent(
    { id: 'not-a-uuid', type: 'user_action', source: 'fax', timestamp: '2026-02-30T00:00:00Z', user_id: 'x'.repeat(51), data: { action: 'dance', value: 'ten', metadata: [1] }, extra: 1 },
    NOW,
  );
  t.is(event, undefined);
  t.deepEqual(problems.map((p) => p.field).sort(), ['data.action', 'data.metadata', 'data.value', 'extra', 'id', 'source', 'timestamp', 'user_id']);
  t.regex(acceptEvent({ ...valid, type: 'user_event' }, NOW).problems.find((p) => p.field === 'type')!.problem, /must be one of user_action, sensor_data, system_log; got "user_event"/);
  t.regex(problems.find((p) => p.field === 'source')!.problem, /web, mobile, iot_device, system/);
});

test('data must be an object; a purchase needs a value; value must be finite', (t) => {
  t.deepEqual(acceptEvent({ ...valid, data: undefined }, NOW).problems.map((p) => p.field), ['data']);
  t.deepEqual(acceptEvent({ ...valid, data: [] }, NOW).problems.map((p) => p.field), ['data']);
  t.deepEqual(acceptEvent({ ...valid, data: { action: 'purchase' } }, NOW).problems.map((p) => p.field), ['data.value']);
  t.deepEqual(acceptEvent({ ...valid, data: { action: 'purchase', value: 1e400 } }, NOW).problems.map((p) => p.field), ['data.value']);
  t.deepEqual(acceptEvent({ type: 'sensor_data', source: 'iot_device', data: { anything: [1, { deep: true }] } }, NOW).problems, []);
  t.deepEqual(acceptEvent({ ...valid, user_id: null, id: null, timestamp: null }, NOW).problems, []);
  t.deepEqual(acceptEvent({ ...valid, user_id: '' }, NOW).problems.map((p) => p.field), ['user_id']);
  t.deepEqual(acceptEvent({ ...valid, timestamp: 1700000000 }, NOW).problems.map((p) => p.field), ['timestamp']);
});

test('RFC 3339 timestamps: offsets, fractions, and impossible dates', (t) => {
  t.is(parseRfc3339('2026-11-22T13:00:00Z'), Date.parse('2026-11-22T13:00:00Z'));
  t.is(parseRfc3339('2026-11-22t13:00:00.5-01:30'), Date.parse('2026-11-22T14:30:00.500Z'));
  for (const bad of ['2026-11-22', '2026-11-22T13:00:00', '2026-13-01T00:00:00Z', '2025-02-29T00:00:00Z', '2026-11-22T24:00:00Z', 'yesterday', '']) {
    t.is(parseRfc3339(bad), undefined, bad);
  }
  t.not(parseRfc3339('2024-02-29T00:00:00Z'), undefined);
});

test('batches: the shape, emptiness, and each event named by index', (t) => {
  t.deepEqual(acceptBatch([], NOW).problems.map((p) => p.field), ['body']);
  t.deepEqual(acceptBatch({}, NOW).problems.map((p) => p.field), ['events']);
  t.deepEqual(acceptBatch({ events: [] }, NOW).problems.map((p) => p.field), ['events']);
  const r = acceptBatch({ events: [valid, { ...valid, source: 'tv' }, 7] }, NOW);
  t.deepEqual(r.problems.map((p) => p.field), ['events[1].source', 'events[2]']);
  t.is(acceptBatch({ events: [valid, valid] }, NOW).events!.length, 2);
});

test('hostile nesting is measured without recursion and refused', (t) => {
  let deep: unknown = {};
  for (let i = 0; i < 200_000; i++) deep = { a: deep };
  t.true(nestedDeeperThan(deep, 32));
  t.deepEqual(acceptEvent({ ...valid, data: deep }, NOW).problems.map((p) => p.field), ['data']);
  let deepType: unknown = [];
  for (let i = 0; i < 200_000; i++) deepType = [deepType];
  t.deepEqual(acceptEvent({ ...valid, type: deepType }, NOW).problems.map((p) => p.field), ['type']);
});

test('prototype keys are unknown fields, not a way in', (t) => {
  const raw = JSON.parse('{"type":"system_log","source":"system","data":{},"__proto__":{"polluted":true}}');
  t.deepEqual(acceptEvent(raw, NOW).problems.map((p) => p.field), ['__proto__']);
  t.is(({} as Record<string, unknown>).polluted, undefined);
});

// The HTTP door, with stand-ins for the queue and the rest.
const SUMMARY_TOKEN = 'summary-token-of-the-validation-tests-0123456789';

async function door(t: import('ava').ExecutionContext, opts: { maxBodyBytes?: number; failQueue?: boolean; queueFull?: () => boolean } = {}) {
  const accepted: AcceptedEvent[][] = [];
  const checks = { count: 0 };
  const server = await startDoor(t, {
    maxBodyBytes: opts.maxBodyBytes ?? 64 * 1024,
    async admit() {
      if (opts.queueFull?.()) throw Object.assign(new Error('20000 events are queued, over the bound of 20000; retry shortly'), { code: 'OVERLOADED' });
    },
    check: async (task) => {
      checks.count++;
      return checkBody(task);
    },
    async accept(batch) {
      if (opts.failQueue) throw new Error('redis is gone');
      accepted.push(JSON.parse(batch.events) as AcceptedEvent[]);
    },
    summaryToken: SUMMARY_TOKEN,
  });
  return { server, url: server.url, accepted, checks };
}

async function call(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}
const json = (body: unknown, path = '/events') => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), path });

test('HTTP: 202 with the ids once queued; 400 names the fields', async (t) => {
  const { url, accepted } = await door(t);
  const ok = await call(`${url}/events`, json(valid));
  t.is(ok.status, 202);
  t.is(ok.body.ids[0], ok.body.id);
  t.is(accepted.length, 1);
  const bad = await call(`${url}/events`, json({ ...valid, type: 'x', source: 'y' }));
  t.is(bad.status, 400);
  t.is(bad.body.error, 'invalid_event');
  t.deepEqual(bad.body.problems.map((p: { field: string }) => p.field), ['type', 'source']);
  t.regex(bad.body.message, /type must be one of/);
  const badBatch = await call(`${url}/events/batch`, json({ events: [valid, { ...valid, data: 3 }] }));
  t.is(badBatch.status, 400);
  t.deepEqual(badBatch.body.problems.map((p: { field: string }) => p.field), ['events[1].data']);
  t.is(accepted.length, 1, 'a batch with one bad event is refused whole');
});

// #20 item 2: what passes the door must be storable in every store (PostgreSQL text and jsonb refuse
// U+0000; jsonb and MySQL's JSON refuse an unpaired surrogate).
test('text no store can hold (U+0000, unpaired surrogates) is refused, each place named', (t) => {
  const { event, problems } = acceptEvent(
    { ...valid, user_id: 'ann\u0000', data: { action: 'click', note: 'a\ud800b', metadata: { ['k\u0000ey']: 1, list: ['ok', 'x\udc00'], fine: '\ud83d\ude00' } } },
    NOW,
  );
  t.is(event, undefined);
  t.deepEqual(problems.map((p) => p.field).sort(), ['data.metadata.list[1]', 'data.metadata["k\\u0000ey"]', 'data.note', 'user_id']);
  t.regex(problems.find((p) => p.field === 'user_id')!.problem, /holds U\+0000 \(NUL\), which PostgreSQL and MySQL cannot store/);
  t.regex(problems.find((p) => p.field === 'data.note')!.problem, /an unpaired UTF-16 surrogate \(\\ud800\)/);
  t.regex(problems.find((p) => p.field.startsWith('data.metadata['))!.problem, /is a key that holds U\+0000/);
  // A surrogate pair (an emoji) is fine, so is a backslash followed by u0000 as plain text.
  t.deepEqual(acceptEvent({ ...valid, user_id: '\ud83d\ude00', data: { action: 'click', text: '\\u0000' } }, NOW).problems, []);
  t.deepEqual(acceptEvent({ type: 'system_log', source: 'system', data: { ['\ud800']: 'x' } }, NOW).problems.map((p) => p.field), ['data["\\ud800"]']);
});

test('HTTP: a batch with U+0000 is refused with 400 naming the field, nothing queued', async (t) => {
  const { url, accepted } = await door(t);
  // As a client sends it: the JSON escape \u0000 inside the body text.
  const body = `{"events":[${JSON.stringify(valid)},{"type":"user_action","source":"web","user_id":"nul\\u0000","data":{"action":"click","k\\u0000":"v"}}]}`;
  const r = await call(`${url}/events/batch`, json(body, '/events/batch'));
  t.is(r.status, 400);
  t.is(r.body.error, 'invalid_events');
  t.deepEqual(r.body.problems.map((p: { field: string }) => p.field).sort(), ['events[1].data["k\\u0000"]', 'events[1].user_id']);
  t.is(accepted.length, 0);
});

test('HTTP: a batch of 100 is accepted, 101 gets 413 batch_too_large', async (t) => {
  const { url } = await door(t);
  t.is((await call(`${url}/events/batch`, json({ events: Array(100).fill(valid) }))).status, 202);
  const over = await call(`${url}/events/batch`, json({ events: Array(101).fill(valid) }));
  t.is(over.status, 413);
  t.is(over.body.error, 'batch_too_large');
  t.regex(over.body.message, /101 events; at most 100/);
});

test('HTTP: content type must be JSON (415), the body valid JSON (400)', async (t) => {
  const { url } = await door(t);
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1']) {
    const r = await call(`${url}/events`, { method: 'POST', headers: { 'content-type': type }, body: JSON.stringify(valid) });
    t.is(r.status, 415, type);
    t.is(r.body.error, 'unsupported_media_type');
  }
  t.is((await call(`${url}/events`, { method: 'POST', body: new Uint8Array(Buffer.from(JSON.stringify(valid))) })).status, 415);
  t.is((await call(`${url}/events`, { method: 'POST', headers: { 'content-type': 'application/json; charset=UTF-8' }, body: JSON.stringify(valid) })).status, 202);
  for (const body of ['{"type":', '', 'null', '[1,2]', '"str"', '{"a":1}garbage']) {
    const r = await call(`${url}/events`, json(body));
    t.is(r.status, 400, body);
    t.true(['invalid_json', 'invalid_event'].includes(r.body.error), body);
  }
  t.is((await call(`${url}/events`, json('{"type":'))).body.error, 'invalid_json');
});

test('HTTP: a body over the limit gets 413 body_too_large, declared or streamed', async (t) => {
  const { url, accepted } = await door(t, { maxBodyBytes: 2048 });
  const big = JSON.stringify({ ...valid, data: { action: 'click', metadata: { pad: 'x'.repeat(4000) } } });
  const declared = await call(`${url}/events`, json(big));
  t.is(declared.status, 413);
  t.is(declared.body.error, 'body_too_large');
  // Chunked, with no Content-Length: the limit holds while streaming, and the connection is closed.
  const port = Number(new URL(url).port);
  const streamed = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/events', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < 200_000 && req.write('x'.repeat(1000))) sent += 1000;
      if (sent < 200_000) req.once('drain', pump);
      else req.end();
    };
    pump();
  });
  t.is(streamed, 413);
  t.is(accepted.length, 0);
});

test('HTTP: unknown paths 404, wrong methods 405, a failed queue 503, summary ids checked', async (t) => {
  const { url } = await door(t);
  t.is((await call(`${url}/nope`)).status, 404);
  const m = await call(`${url}/events`);
  t.is(m.status, 405);
  t.is(m.headers.get('allow'), 'POST');
  t.is((await call(`${url}/metrics`, { method: 'DELETE' })).status, 405);
  const bearer = { headers: { authorization: `Bearer ${SUMMARY_TOKEN}` } };
  t.is((await call(`${url}/users/u1/summary`, bearer)).body.user_id, 'u1');
  t.is((await call(`${url}/users/${'x'.repeat(51)}/summary`, bearer)).status, 400);
  t.is((await call(`${url}/users/%E0%A4%A/summary`, bearer)).status, 400);
  t.is((await call(`${url}/health`)).status, 200);
  const down = await door(t, { failQueue: true });
  const r = await call(`${down.url}/events`, json(valid));
  t.is(r.status, 503);
  t.is(r.body.error, 'queue_unavailable');
});

test('HTTP: a full queue refuses with 503 overloaded before the body is parsed or checked', async (t) => {
  let full = true;
  const { url, accepted, checks } = await door(t, { queueFull: () => full });
  const refused = await call(`${url}/events/batch`, json({ events: [valid, valid] }, '/events/batch'));
  t.is(refused.status, 503);
  t.is(refused.body.error, 'overloaded');
  t.regex(refused.body.message, /retry/);
  t.is(checks.count, 0);
  t.is(accepted.length, 0);
  full = false;
  t.is((await call(`${url}/events/batch`, json({ events: [valid, valid] }, '/events/batch'))).status, 202);
  t.is(checks.count, 1);
});

test('HTTP: once stopping, new requests get 503 shutting_down', async (t) => {
  const { url, server } = await door(t);
  await server.refuseNew();
  const r = await call(`${url}/events`, json(valid));
  t.is(r.status, 503);
  t.is(r.body.error, 'shutting_down');
  t.is((await call(`${url}/health`)).status, 503);
});

test('HTTP: malformed request lines get 400 and a closed connection', async (t) => {
  const { url } = await door(t);
  const { connect } = await import('node:net');
  const reply = await new Promise<string>((resolve) => {
    const s = connect(Number(new URL(url).port), '127.0.0.1', () => s.write('GARBAGE \x00\x01 HTTP/9\r\n\r\n'));
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('close', () => resolve(data));
  });
  t.regex(reply, /^HTTP\/1.1 400/);
});
