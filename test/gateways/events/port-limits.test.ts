// The events port's bounds against hostile clients: a 400 that lists at most 20 problems, a client
// that never finishes its headers, more connections than the cap, and a full queue answered before
// the body is read.

import test from 'ava';
import { connect, type Socket } from 'node:net';
import { MAX_LISTED_PROBLEMS } from '../../../gateways/events/event.js';
import type { EventsHttpDeps } from '../../../gateways/events/http-server.js';
import { checkBody } from '../../../gateways/events/request-check.js';
import { startDoor } from './helpers.js';

process.env.TROUPE_LOG_LEVEL ??= 'silent';

async function door(t: import('ava').ExecutionContext, extra: Partial<EventsHttpDeps> & { queueFull?: boolean } = {}) {
  const checked = { count: 0 };
  const server = await startDoor(t, {
    maxBodyBytes: 2 * 1_048_576,
    async admit() {
      if (extra.queueFull) throw Object.assign(new Error('20000 events are queued, over the bound of 20000; retry shortly'), { code: 'OVERLOADED' });
    },
    check: async (task) => {
      checked.count++;
      return checkBody(task);
    },
    ...extra,
  });
  return { port: server.port, url: server.url, checked };
}

/** A raw socket the test releases whatever happens. */
function socketTo(t: import('ava').ExecutionContext, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
    t.teardown(() => s.destroy());
  });
}

/** Resolves with what the socket received once it is closed, or with undefined after `ms`. */
function closedWithin(s: Socket, ms: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let got = '';
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', () => {});
    const timer = setTimeout(() => resolve(undefined), ms);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

test('a 1 MB body of 95,000 unknown keys is answered in a few KB: 20 problems and how many more', async (t) => {
  const { url } = await door(t);
  const raw: Record<string, number> = { type: 'x' } as unknown as Record<string, number>;
  for (let i = 0; i < 95_000; i++) raw[`k${i}`] = 1;
  const body = JSON.stringify(raw);
  t.true(body.length > 1_000_000);
  const res = await fetch(`${url}/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await res.text();
  t.is(res.status, 400);
  t.true(text.length < 16_000, `the reply is ${text.length} bytes`);
  const reply = JSON.parse(text) as { problems: { field: string }[]; more_problems: number; message: string };
  t.is(reply.problems.length, MAX_LISTED_PROBLEMS);
  // 95,000 keys, the bad type, the missing source and data: all counted, 20 listed.
  t.is(reply.more_problems, 95_003 - MAX_LISTED_PROBLEMS);
  t.regex(reply.message, /and 94983 more problems not listed$/);
});

test('a batch of 100 events each full of bad keys is capped across the whole batch', (t) => {
  const bad = { type: 'x', source: 'y', data: 1, a: 1, b: 2, c: 3 };
  const r = checkBody({ text: JSON.stringify({ events: Array(100).fill(bad), extra: 1 }), batch: true, receivedAt: Date.now() });
  if (r.ok) return t.fail('a bad batch was accepted');
  t.is(r.problems!.length, MAX_LISTED_PROBLEMS);
  t.is(r.problems![0]!.field, 'extra');
  t.is(r.moreProblems, 1 + 100 * 6 - MAX_LISTED_PROBLEMS);
});

test('a client that never finishes its headers is cut at the headers timeout', async (t) => {
  const { port } = await door(t, { headersTimeoutMs: 300, requestTimeoutMs: 600 });
  const s = await socketTo(t, port);
  s.write('POST /events HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n');
  // Node's own default would hold it for a minute; the deadline is generous for a loaded machine.
  const got = await closedWithin(s, 15_000);
  t.not(got, undefined, 'the connection is still open after 15 s');
  t.regex(got!, /^(HTTP\/1\.1 408|)/);
});

test('a client that sends headers then dribbles its body gets 408 at the request timeout', async (t) => {
  const { port } = await door(t, { headersTimeoutMs: 300, requestTimeoutMs: 800 });
  const s = await socketTo(t, port);
  s.write('POST /events HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"a":');
  const got = await closedWithin(s, 15_000);
  t.not(got, undefined, 'the connection is still open after 15 s');
  t.regex(got!, /^HTTP\/1\.1 408/);
});

test('connections over the cap are closed at once; those within it are served', async (t) => {
  const { port, url } = await door(t, { maxConnections: 2 });
  const held = [await socketTo(t, port), await socketTo(t, port)];
  // The two held connections are the server's to count once it has accepted them.
  await new Promise((r) => setTimeout(r, 100));
  const third = await socketTo(t, port);
  const got = await closedWithin(third, 10_000);
  t.is(got, '', 'the connection over the cap is closed without an answer');
  for (const s of held) s.destroy();
  // Once the held ones are gone, a new client gets through (polled: the server sees the closes late).
  const deadline = Date.now() + 10_000;
  let status = 0;
  while (Date.now() < deadline && status !== 200) {
    status = await fetch(`${url}/health`, { headers: { connection: 'close' } }).then((r) => r.status, () => 0);
    if (status !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  t.is(status, 200);
});

test('a full queue answers 503 with Retry-After before the body is read, and closes', async (t) => {
  const { port, checked } = await door(t, { queueFull: true });
  const s = await socketTo(t, port);
  // Headers and a first slice of a declared 1.5 MB body; the rest is never sent.
  s.write(`POST /events HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1500000\r\n\r\n{"pad":"${'x'.repeat(1000)}`);
  const got = await closedWithin(s, 10_000);
  t.not(got, undefined, 'no answer while the body is still owed');
  t.regex(got!, /^HTTP\/1\.1 503/);
  t.regex(got!, /retry-after: 1/i);
  t.regex(got!, /connection: close/i);
  t.is(checked.count, 0);
});
