// A round against the plain sequential model of the match rule: random events, users, arrival
// orders and chunk boundaries; and the ordering book's own promises.

import test from 'ava';
import fc from 'fast-check';
import { expectedMatches, type LikeEvent } from '../../../gateways/dating/checker.js';
import { SequenceBook } from '../../../gateways/dating/ordering.js';
import { LIKE_LIKED, LIKE_NOT_LIKED, LIKE_TYPE_NAMES, type LikeType } from '../../../gateways/dating/parser.js';
import { Round } from '../../../gateways/dating/round.js';
import { inProcessPairs, quietLog } from './support.js';

function wire(events: LikeEvent[]): string {
  return 'EVENT BEGIN\n' + events.map((e) => `${e.seq}|${LIKE_TYPE_NAMES[e.type]}|${e.from}|${e.to}\n`).join('') + 'EVENT END\n';
}

async function play(text: string, cuts: number[] = [], roundId = 1, decider = inProcessPairs()): Promise<{ matches: number[]; complete: boolean }> {
  const round = new Round({ id: roundId, decider, log: quietLog, maxSeq: 1_000_000 });
  const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  for (const p of [...points, text.length]) {
    round.sourceData(Buffer.from(text.slice(at, p), 'latin1'));
    at = p;
  }
  round.sourceClosed('test over');
  const complete = await round.decided;
  return { matches: [...round.matchesSoFar], complete };
}

test('the contract example gives matches 4 and 7', async (t) => {
  const text =
    'EVENT BEGIN\n7|LIKE_LIKED|100|300\n2|LIKE_LIKED|100|200\n5|LIKE_LIKED|300|100\n1|LIKE_UNSPECIFIED|300|100\n' +
    '4|LIKE_LIKED|200|100\n6|LIKE_UNSPECIFIED|200|300\n3|LIKE_NOT_LIKED|300|200\nEVENT END\n';
  t.deepEqual(await play(text), { matches: [4, 7], complete: true });
});

const eventsArb = fc
  .record({
    users: fc.integer({ min: 1, max: 6 }),
    raw: fc.array(fc.record({ type: fc.constantFrom<LikeType>(0, 1, 2), from: fc.nat(), to: fc.nat() }), { maxLength: 80 }),
  })
  .map(({ users, raw }) => raw.map((r, i): LikeEvent => ({ seq: i + 1, type: r.type, from: (r.from % users) + 1, to: (r.to % users) + 1 })));

test('matches equal the sequential model over random events, users, orders and chunks', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      eventsArb.chain((events) => fc.tuple(fc.constant(events), fc.shuffledSubarray(events, { minLength: events.length, maxLength: events.length }))),
      fc.array(fc.nat(), { maxLength: 10 }),
      async ([inOrder, arrival], cuts) => {
        const { matches, complete } = await play(wire(arrival), cuts);
        return complete && JSON.stringify(matches) === JSON.stringify(expectedMatches(inOrder));
      },
    ),
    { numRuns: 300 },
  );
  t.pass();
});

test('a pair actor starts afresh in a new round', async (t) => {
  const pairs = inProcessPairs();
  const text = wire([
    { seq: 1, type: LIKE_LIKED, from: 1, to: 2 },
    { seq: 2, type: LIKE_LIKED, from: 1, to: 2 },
  ]);
  t.deepEqual((await play(text, [], 1, pairs)).matches, []);
  const answer = wire([
    { seq: 1, type: LIKE_LIKED, from: 2, to: 1 },
    { seq: 2, type: LIKE_LIKED, from: 2, to: 1 },
  ]);
  t.deepEqual((await play(answer, [], 2, pairs)).matches, [], 'round 1 likes do not leak into round 2');
});

test('only pairs with a second like wake an actor', async (t) => {
  const pairs = inProcessPairs();
  const events: LikeEvent[] = [];
  for (let i = 1; i <= 100; i++) events.push({ seq: i, type: LIKE_LIKED, from: i, to: i + 1000 });
  events.push({ seq: 101, type: LIKE_LIKED, from: 1001, to: 1 });
  const { matches } = await play(wire(events), [], 1, pairs);
  t.deepEqual(matches, [101]);
  t.is(pairs.activations, 1);
});

test('the book orders, holds first likes, and counts missing and duplicate events', (t) => {
  const book = new SequenceBook({ maxSeq: 100 });
  t.true(book.add(3, LIKE_LIKED, 2, 1));
  t.deepEqual(book.advance(), []);
  t.true(book.add(1, LIKE_LIKED, 1, 2));
  t.true(book.add(3, LIKE_LIKED, 2, 1), 'not yet ordered: the later copy replaces it');
  t.deepEqual(book.advance(), []);
  t.is(book.frontier, 1);
  t.true(book.add(2, LIKE_NOT_LIKED, 1, 2));
  t.false(book.add(1, LIKE_LIKED, 5, 6), 'already ordered: dropped');
  const batches = book.advance();
  t.is(book.frontier, 3);
  t.deepEqual(
    batches.map((b) => ({ lo: b.lo, hi: b.hi, events: b.events.map((e) => [Math.floor(e / 8), e & 7]) })),
    [{ lo: 1, hi: 2, events: [[1, 3], [3, 2]] }],
  );
  t.true(book.add(6, LIKE_LIKED, 1, 1));
  t.is(book.missing(), 2);
  t.is(book.duplicates(), 1);
});

test('user ids up to 2^31 - 1 and self-likes follow the rule', async (t) => {
  const big = 2147483647;
  const events: LikeEvent[] = [
    { seq: 1, type: LIKE_LIKED, from: big, to: 1 },
    { seq: 2, type: LIKE_LIKED, from: 1, to: big },
    { seq: 3, type: LIKE_LIKED, from: big - 1, to: big },
    { seq: 4, type: LIKE_LIKED, from: big, to: big - 1 },
    { seq: 5, type: LIKE_LIKED, from: 7, to: 7 },
    { seq: 6, type: LIKE_LIKED, from: 7, to: 7 },
  ];
  const { matches } = await play(wire([...events].reverse()));
  t.deepEqual(matches, [2, 4, 6]);
  t.deepEqual(matches, expectedMatches(events));
});
