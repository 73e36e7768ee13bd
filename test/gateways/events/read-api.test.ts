// GET /events/{id} and GET /events?... over HTTP on every backend: pages that walk the filters,
// and malformed, oversized and hostile query strings refused with a 400 that names the parameter.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { decodeCursor, encodeCursor } from '../../../gateways/events/event-query.js';
import { BACKENDS, get, post, startEvents, until } from './helpers.js';

async function raw(url: string, path: string, method = 'GET'): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${url}${path}`, { method });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

for (const backend of BACKENDS) {
  test(`${backend}: stored events read back by id, and by user, type and time a page at a time`, async (t) => {
    const h = await startEvents(t, backend);
    const user = `r-${randomUUID().slice(0, 8)}`;
    const events = Array.from({ length: 30 }, (_, i) => ({
      id: randomUUID(),
      type: i % 3 === 0 ? 'sensor_data' : 'user_action',
      source: i % 3 === 0 ? 'iot_device' : 'web',
      user_id: i % 2 ? user : 'someone-else',
      timestamp: new Date(Date.UTC(2026, 10, 22, 10, 0, Math.floor(i / 2))).toISOString(),
      data: i % 3 === 0 ? { celsius: i } : { action: 'click' },
    }));
    t.is((await post(`${h.url}/events/batch`, { events })).status, 202);
    await until('stored', async () => (await h.pipeline.store.count()) === 30);

    const one = await get(`${h.url}/events/${events[3]!.id.toUpperCase()}`);
    t.is(one.status, 200, 'ids in any case, as the door takes them');
    t.like(one.body, { id: events[3]!.id, type: 'sensor_data', source: 'iot_device', user_id: user, created_at: '2026-11-22T10:00:01.000Z' });
    t.is(one.body.processed_data.celsius, 3);
    const unknown = await get(`${h.url}/events/${randomUUID()}`);
    t.is(unknown.status, 404);
    t.is(unknown.body.error, 'event_not_found');

    const first = await get(`${h.url}/events`);
    t.is(first.status, 200);
    t.is(first.body.events.length, 30, 'default page of 100');
    t.is(first.body.next_cursor, null);
    t.deepEqual(first.body.events.map((e: { created_at: string }) => e.created_at), [...first.body.events.map((e: { created_at: string }) => e.created_at)].sort().reverse());

    const ids: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: { status: number; body: any } = await get(`${h.url}/events?user_id=${user}&type=user_action&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      t.is(r.status, 200);
      ids.push(...r.body.events.map((e: { id: string }) => e.id));
      cursor = r.body.next_cursor;
      pages++;
    } while (cursor && pages < 50);
    const want = events.filter((e) => e.user_id === user && e.type === 'user_action');
    t.deepEqual([...ids].sort(), want.map((e) => e.id).sort());
    t.is(new Set(ids).size, ids.length);
    t.is(pages, Math.ceil(want.length / 3));

    const window = await get(`${h.url}/events?since=2026-11-22T11:00:03%2B01:00&until=2026-11-22T10:00:05Z`);
    t.is(window.status, 200);
    t.is(window.body.events.length, 4, 'seconds 3 and 4, two events each');
    t.is((await get(`${h.url}/events?type=system_log`)).body.events.length, 0);
  });

  test(`${backend}: malformed, oversized and hostile queries get a 400 naming the parameter; the store is untouched`, async (t) => {
    const h = await startEvents(t, backend);
    const e = { id: randomUUID(), type: 'user_action', source: 'web', user_id: 'victim', data: { action: 'login' } };
    t.is((await post(`${h.url}/events`, e)).status, 202);
    await until('stored', async () => (await h.pipeline.store.count()) === 1);

    const bad = async (query: string, field: string) => {
      const r = await raw(h.url, `/events?${query}`);
      t.is(r.status, 400, query);
      t.is(r.body.error, 'invalid_query', query);
      t.true(r.body.problems.some((p: { field: string }) => p.field === field), `${query}: ${JSON.stringify(r.body.problems)}`);
      return r;
    };
    await bad('limit=1001', 'limit');
    await bad('limit=99999999999999999999', 'limit');
    await bad('limit=0', 'limit');
    await bad('limit=-5', 'limit');
    await bad('limit=1e3', 'limit');
    await bad('limit=10;DROP%20TABLE%20processed_events', 'limit');
    await bad('limit=%20', 'limit');
    await bad('cursor=garbage!', 'cursor');
    await bad(`cursor=${'A'.repeat(5000)}`, 'cursor');
    await bad(`cursor=${Buffer.from('["2026-11-22T10:00:00.000Z","x\' OR 1=1 --"]').toString('base64url')}`, 'cursor');
    await bad(`cursor=${Buffer.from('{"__proto__":{"admin":true}}').toString('base64url')}`, 'cursor');
    await bad(`cursor=${Buffer.from('["2026-13-45T10:00:00.000Z","' + randomUUID() + '"]').toString('base64url')}`, 'cursor');
    await bad('type=user_action%27%20OR%20%271%27=%271', 'type');
    await bad('type=USER_ACTION', 'type');
    await bad(`user_id=${'x'.repeat(51)}`, 'user_id');
    await bad('user_id=a&user_id=b', 'user_id');
    await bad('limit=5&limit=5', 'limit');
    await bad('user_id=', 'user_id');
    await bad('since=yesterday', 'since');
    await bad('until=2026-02-30T00:00:00Z', 'until');
    await bad('since=2026-11-22T10:00:00Z&until=2026-11-22T09:00:00Z', 'until');
    await bad('userid=victim', 'userid');
    await bad('__proto__=1', '__proto__');
    const plus = await bad('since=2026-11-22T10:00:00+01:00', 'since');
    t.regex(plus.body.message, /%2B/, 'an unencoded + is explained');
    const many = await raw(h.url, `/events?${Array.from({ length: 200 }, (_, i) => `p${i}=1`).join('&')}`);
    t.is(many.status, 400);

    // SQL-ish text where text is allowed is just a user that has no events.
    for (const u of ["victim' OR '1'='1", 'victim"; DROP TABLE processed_events; --', '%', 'victim%', '\\', 'vic_im']) {
      const r = await raw(h.url, `/events?user_id=${encodeURIComponent(u)}`);
      t.is(r.status, 200, u);
      t.deepEqual(r.body.events, [], u);
    }
    // A cursor from this API, but from far in the future or past, is a valid empty or full page.
    t.is((await raw(h.url, `/events?cursor=${encodeCursor({ created_at: '1970-01-01T00:00:01.000Z', id: randomUUID() })}`)).body.events.length, 0);
    t.is((await raw(h.url, `/events?cursor=${encodeCursor({ created_at: '2037-12-31T00:00:00.000Z', id: randomUUID() })}`)).body.events.length, 1);

    const ids = ['not-a-uuid', '%E0%A4%A', `${randomUUID()}x`, "1'%20OR%20'1'='1", 'x'.repeat(2000), `${randomUUID()}/extra`, ''];
    for (const id of ids) {
      const r = await raw(h.url, `/events/${id}`);
      t.is(r.status, 400, id);
      t.is(r.body.error, 'invalid_event_id', id);
    }
    t.is((await raw(h.url, `/events/${e.id}`, 'DELETE')).status, 405);
    t.is((await raw(h.url, '/events', 'PUT')).headers.get('allow'), 'GET, POST');
    t.is(await h.pipeline.store.count(), 1);
    t.is((await get(`${h.url}/events/${e.id}`)).body.user_id, 'victim');
  });
}

test('a cursor is opaque and round-trips; text that is not one of ours is refused', (t) => {
  const p = { created_at: '2026-11-22T10:00:00.000Z', id: randomUUID() };
  t.deepEqual(decodeCursor(encodeCursor(p)), p);
  t.is(decodeCursor(''), undefined);
  t.is(decodeCursor(Buffer.from(JSON.stringify([p.created_at, p.id.toUpperCase()])).toString('base64url')), undefined);
  t.is(decodeCursor(Buffer.from(JSON.stringify([p.created_at, p.id, 1])).toString('base64url')), undefined);
  t.is(decodeCursor(Buffer.from(JSON.stringify(['2026-11-22T10:00:00Z', p.id])).toString('base64url')), undefined);
  t.is(decodeCursor(Buffer.from('[').toString('base64url')), undefined);
});
