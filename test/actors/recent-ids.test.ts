// The packed record of recent event ids: entries found only on their own boundaries, times kept to
// the second, trimming by count and by time.

import test from 'ava';
import { entryCount, holds, idDigest, receivedAt, trimmed, withEntry } from '../../actors/recent-ids.js';

test('a digest is 12 url-safe characters and the same for the same id', (t) => {
  t.regex(idDigest('0c6f8a4e-4b7e-4a55-9a3c-3f1f0b4b6c11'), /^[A-Za-z0-9_-]{12}$/);
  t.is(idDigest('x'), idDigest('x'));
  t.not(idDigest('x'), idDigest('y'));
});

test('an entry is found only where an entry starts, not across two', (t) => {
  const recent = withEntry(withEntry('', 'AAAAAAAAAAAA', 1_000), 'BBBBBBBBBBBB', 2_000);
  t.is(entryCount(recent), 2);
  t.true(holds(recent, 'AAAAAAAAAAAA'));
  t.true(holds(recent, 'BBBBBBBBBBBB'));
  t.false(holds(recent, recent.slice(5, 17))); // straddles the first entry's digest and time
  t.false(holds(recent, recent.slice(19 - 6, 19 + 6)));
  t.false(holds('', 'AAAAAAAAAAAA'));
});

test('receipt times are kept to the second', (t) => {
  const recent = withEntry('', idDigest('a'), 1_763_800_000_999);
  t.is(receivedAt(recent, 0), 1_763_800_000_000);
});

test('trimming keeps the newest by count, then drops what is older than the window', (t) => {
  let recent = '';
  for (let i = 0; i < 10; i++) recent = withEntry(recent, idDigest(String(i)), i * 10_000);
  const byCount = trimmed(recent, 4, 1e12, 90_000);
  t.is(entryCount(byCount), 4);
  t.true(holds(byCount, idDigest('6')));
  t.false(holds(byCount, idDigest('5')));
  // Window 25 s ending at 90 s: entries from 70 s on stay; 60 s, a full second before 65 s, goes.
  const byTime = trimmed(recent, 100, 25_000, 90_000);
  t.deepEqual([...Array(entryCount(byTime)).keys()].map((i) => receivedAt(byTime, i)), [70_000, 80_000, 90_000]);
  t.is(trimmed(recent, 100, 1e12, 90_000), recent);
});
