// GET /users/<id>/summary on the public events port: without --events-summary-token-file it is not
// served (404 like any unknown path, and the 404 no longer names it); with it, 401 without the
// right bearer token and 200 with it. The token file is checked at start like a secret.

import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventsSettings, pipelineOptionsFrom } from '../../../gateways/events/index.js';
import type { EventsHttpDeps } from '../../../gateways/events/http-server.js';
import { AskTimeout, ConfigError, PartitionUnavailable, PeerGone } from '../../../runtime/errors.js';
import { startDoor, testLog } from './helpers.js';

process.env.TROUPE_LOG_LEVEL ??= 'silent';
const TOKEN = 'the-summary-token-of-this-test-0123456789';

async function door(t: import('ava').ExecutionContext, extra: Partial<EventsHttpDeps> = {}): Promise<string> {
  const server = await startDoor(t, {
    maxPendingEnqueues: 10,
    async summary(user_id) {
      return { user_id, events: 3, by_type: {}, by_action: {}, purchase_total: 0, last_event_at: null };
    },
    ...extra,
  });
  return server.url;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

test('without a token setting the summary is 404 like any unknown path, and the 404 does not name it', async (t) => {
  const url = await door(t);
  const summary = await get(`${url}/users/u1/summary`, { authorization: `Bearer ${TOKEN}` });
  const unknown = await get(`${url}/users/u1/elsewhere`);
  t.is(summary.status, 404);
  t.is(summary.body.error, 'not_found');
  t.is(unknown.status, 404);
  t.notRegex(String(summary.body.message), /<id>\/summary/);
  t.notRegex(String(unknown.body.message), /summary/);
  t.is(summary.body.message, String(unknown.body.message).replace("elsewhere", "summary"), "answered like any unknown path");
});

test('with a token: 401 without it or with a wrong one, 200 with the right one', async (t) => {
  const url = await door(t, { summaryToken: TOKEN });
  const none = await get(`${url}/users/u1/summary`);
  t.is(none.status, 401);
  t.is(none.body.error, 'unauthorized');
  t.is(none.headers.get('www-authenticate'), 'Bearer');
  for (const wrong of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, 'Bearer ', `Basic ${TOKEN}`, TOKEN, `Bearer ${'a'.repeat(10_000)}`]) {
    t.is((await get(`${url}/users/u1/summary`, { authorization: wrong })).status, 401, wrong.slice(0, 40));
  }
  const ok = await get(`${url}/users/u1/summary`, { authorization: `Bearer ${TOKEN}` });
  t.is(ok.status, 200);
  t.is(ok.body.events, 3);
  t.is((await get(`${url}/users/u1/summary`, { authorization: `bearer   ${TOKEN}` })).status, 200, 'the scheme is case-insensitive');
  t.notRegex(String((await get(`${url}/nope`)).body.message), /summary/);
});

test('a user actor served by nobody for a moment is 503 with Retry-After, not 500; a real failure stays 500', async (t) => {
  // Seen in a chaos run: right after a Redis failover no lease could be confirmed by a replica, and
  // 69 summaries answered 500 "internal" where the client should have been told to retry.
  const refusals = [new PartitionUnavailable('user/u1', 946, 'n2', 'cannot take their leases: 0 of 1 Redis replica confirmed it'), new AskTimeout('user/u1', 'activitySummary', 10_000), new PeerGone('n2')];
  let next = 0;
  const url = await door(t, {
    summaryToken: TOKEN,
    async summary() {
      const err = refusals[next++];
      throw err ?? new TypeError('x is not a function');
    },
  });
  const bearer = { authorization: `Bearer ${TOKEN}` };
  for (const err of refusals) {
    const r = await get(`${url}/users/u1/summary`, bearer);
    t.is(r.status, 503, err.name);
    t.is(r.headers.get('retry-after'), '1');
    t.like(r.body, { error: 'actors_unavailable', code: (err as Error & { code: string }).code });
    t.is(r.body.message, err.message);
  }
  const odd = await get(`${url}/users/u1/summary`, bearer);
  t.is(odd.status, 500);
  t.like(odd.body, { error: 'internal', message: 'x is not a function' });
});

test('the token file: at least 32 bytes, read less its newline; a short or missing one refused at start', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-summary-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const defaults = Object.fromEntries(eventsSettings.map((s) => [s.name, s.default]));
  const rest = { host: '127.0.0.1', dataDir: dir, activity: {} as never, log: testLog };
  const good = join(dir, 'good');
  writeFileSync(good, `${TOKEN}\n`, { mode: 0o600 });
  t.is(pipelineOptionsFrom({ ...defaults, 'events-summary-token-file': good }, rest).summaryToken, TOKEN);
  t.is(pipelineOptionsFrom(defaults, rest).summaryToken, undefined);
  const short = join(dir, 'short');
  writeFileSync(short, 'abc\n', { mode: 0o600 });
  t.throws(() => pipelineOptionsFrom({ ...defaults, 'events-summary-token-file': short }, rest), { instanceOf: ConfigError, message: /events-summary-token-file: the file .* holds 3 bytes; a secret needs at least 32.*head -c 48/ });
  t.throws(() => pipelineOptionsFrom({ ...defaults, 'events-summary-token-file': join(dir, 'none') }, rest), { instanceOf: ConfigError, message: /does not exist/ });
});
