// Connect mode and the harness: `troupe dating --connect` against the project's listening harness
// (exit 0 on MATCH END - OK, 1 otherwise), and the checker and generator the harness stands on.

import test from 'ava';
import fc from 'fast-check';
import { commands } from '../../../gateways/dating/commands.js';
import { expectedMatches, MatchChecker, type LikeEvent } from '../../../gateways/dating/checker.js';
import { generateRound } from '../../../gateways/dating/generator.js';
import { listenAsHarness } from '../../../gateways/dating/harness.js';
import { LIKE_LIKED, LIKE_NOT_LIKED, LIKE_UNSPECIFIED, LikeLineParser } from '../../../gateways/dating/parser.js';

async function connectRound(expectedOverride?: number[]): Promise<{ code: number; answer: string }> {
  const harness = await listenAsHarness({ sourcePort: 0, listenerPort: 0 });
  try {
    const round = generateRound({ events: 5_000, users: 40, seed: 3, shuffle: 'full', answerRate: 0.2 });
    if (expectedOverride) round.expected = Int32Array.from(expectedOverride);
    const played = harness.play(round, { timeoutMs: 20_000 });
    const code = await commands.dating!.run(
      { connect: '127.0.0.1', 'dating-source-port': harness.sourcePort, 'dating-listener-port': harness.listenerPort, 'dating-max-events': 1_000_000, 'dating-source-idle': 5_000, 'dating-listener-wait': 1_000, shards: 1 },
      [],
    );
    return { code, answer: (await played).answer };
  } finally {
    await harness.close();
  }
}

test.serial('troupe dating --connect: a round against a listening harness exits 0 on MATCH END - OK', async (t) => {
  const { code, answer } = await connectRound();
  t.is(answer, 'MATCH END - OK');
  t.is(code, 0);
});

test.serial('troupe dating --connect exits 1 when the listener answers MATCH END - ERROR', async (t) => {
  const { code, answer } = await connectRound([1]);
  t.is(answer, 'MATCH END - ERROR');
  t.is(code, 1);
});

test.serial('troupe dating --connect exits 1 when the harness cannot be reached', async (t) => {
  const harness = await listenAsHarness({ sourcePort: 0, listenerPort: 0 });
  const { sourcePort, listenerPort } = harness;
  await harness.close();
  const code = await commands.dating!.run(
    { connect: '127.0.0.1', 'dating-source-port': sourcePort, 'dating-listener-port': listenerPort, 'dating-max-events': 1000, 'dating-source-idle': 1000, 'dating-dial-for': 200, shards: 1 },
    [],
  );
  t.is(code, 1);
});

test('troupe dating without a host exits 2', async (t) => {
  t.is(await commands.dating!.run({ connect: undefined }, []), 2);
});

test('the checker: OK only for every expected match in order after the source ended; ERROR at the first wrong line', (t) => {
  const ok = new MatchChecker([4, 7]);
  t.is(ok.line('4'), undefined);
  t.is(ok.line('7'), undefined, 'not before the source has sent everything');
  t.is(ok.sourceDone(), 'MATCH END - OK');
  for (const lines of [['7'], ['4', '4'], ['4', '5'], ['x'], ['-4'], ['4.0']]) {
    const c = new MatchChecker([4, 7]);
    c.sourceDone();
    const answers = lines.map((l) => c.line(l));
    t.is(answers.at(-1), 'MATCH END - ERROR', lines.join(','));
  }
  const none = new MatchChecker([]);
  t.is(none.sourceDone(), 'MATCH END - OK');
});

test('the generator: same seed same round; its expected matches are the model over its own events', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 2, max: 8 }), fc.nat(), fc.constantFrom('full', 'windowed', 'none' as const), (events, users, seed, shuffle) => {
      const a = generateRound({ events, users, seed, shuffle, window: 7, answerRate: 0.3 });
      const b = generateRound({ events, users, seed, shuffle, window: 7, answerRate: 0.3 });
      if (Buffer.compare(Buffer.concat(a.chunks), Buffer.concat(b.chunks)) !== 0) return false;
      const parsed: LikeEvent[] = [];
      const parser = new LikeLineParser(
        { begin() {}, end() {}, reject() { throw new Error('generator wrote a bad line'); }, event: (seq, type, from, to) => parsed.push({ seq, type, from, to }) },
        { maxSeq: 1000 },
      );
      for (const c of a.chunks) parser.push(c);
      parsed.sort((x, y) => x.seq - y.seq);
      if (parsed.length !== events || parsed.some((e, i) => e.seq !== i + 1)) return false;
      return JSON.stringify(expectedMatches(parsed)) === JSON.stringify([...a.expected]);
    }),
    { numRuns: 60 },
  );
  t.pass();
});

test('the model reads the rule literally: nothing cancels a like, every answer to an earlier like is a match', (t) => {
  const e = (seq: number, type: number, from: number, to: number) => ({ seq, type, from, to }) as LikeEvent;
  t.deepEqual(
    expectedMatches([e(1, LIKE_LIKED, 1, 2), e(2, LIKE_NOT_LIKED, 1, 2), e(3, LIKE_LIKED, 2, 1), e(4, LIKE_LIKED, 2, 1), e(5, LIKE_UNSPECIFIED, 2, 1), e(6, LIKE_LIKED, 1, 2)]),
    [3, 4, 6],
  );
});
