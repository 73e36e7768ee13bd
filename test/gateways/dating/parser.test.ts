// The Event Source line parser against good, malformed, over-long and hostile input, cut anywhere.

import test from 'ava';
import fc from 'fast-check';
import { LikeLineParser, MAX_LINE_BYTES, type LikeEventSink, type LineProblem } from '../../../gateways/dating/parser.js';

interface Seen {
  events: string[];
  rejects: LineProblem[];
  begun: number;
  ended: number;
}

function parse(chunks: (string | Buffer)[], maxSeq = 1_000_000, finish = true): Seen {
  const seen: Seen = { events: [], rejects: [], begun: 0, ended: 0 };
  const sink: LikeEventSink = {
    begin: () => seen.begun++,
    end: () => seen.ended++,
    event: (seq, type, from, to) => seen.events.push(`${seq}|${type}|${from}|${to}`),
    reject: (problem) => seen.rejects.push(problem),
  };
  const parser = new LikeLineParser(sink, { maxSeq });
  for (const c of chunks) parser.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
  if (finish) parser.finish();
  return seen;
}

const EXAMPLE =
  'EVENT BEGIN\n1|LIKE_UNSPECIFIED|300|100\n2|LIKE_LIKED|100|200\n3|LIKE_NOT_LIKED|300|200\n4|LIKE_LIKED|200|100\n' +
  '5|LIKE_LIKED|300|100\n6|LIKE_UNSPECIFIED|200|300\n7|LIKE_LIKED|100|300\nEVENT END\n';

test('parses the contract example', (t) => {
  const seen = parse([EXAMPLE]);
  t.is(seen.begun, 1);
  t.is(seen.ended, 1);
  t.deepEqual(seen.rejects, []);
  t.deepEqual(seen.events, ['1|2|300|100', '2|0|100|200', '3|1|300|200', '4|0|200|100', '5|0|300|100', '6|2|200|300', '7|0|100|300']);
});

test('the same events whatever the chunk boundaries', (t) => {
  const whole = parse([EXAMPLE]);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: EXAMPLE.length }), { maxLength: 12 }), (cuts) => {
      const points = [...new Set(cuts)].sort((a, b) => a - b);
      const chunks: string[] = [];
      let at = 0;
      for (const p of points) {
        chunks.push(EXAMPLE.slice(at, p));
        at = p;
      }
      chunks.push(EXAMPLE.slice(at));
      const seen = parse(chunks);
      return JSON.stringify(seen) === JSON.stringify(whole);
    }),
  );
  t.pass();
});

test('CRLF line endings and a last line without newline', (t) => {
  const seen = parse(['EVENT BEGIN\r\n1|LIKE_LIKED|1|2\r\nEVENT END']);
  t.deepEqual(seen.events, ['1|0|1|2']);
  t.is(seen.ended, 1);
});

test('each malformed line is dropped with its reason, and parsing goes on', (t) => {
  const bad: [string, LineProblem][] = [
    ['1|LIKE_LIKED|1', 'malformed'],
    ['1|LIKE_LIKED|1|2|3', 'malformed'],
    ['x|LIKE_LIKED|1|2', 'malformed'],
    ['1|LIKE_LIKED|a|2', 'malformed'],
    ['1|LIKE_LIKED||2', 'malformed'],
    ['1|LIKE_LIKED|1|', 'malformed'],
    ['-1|LIKE_LIKED|1|2', 'malformed'],
    ['1 |LIKE_LIKED|1|2', 'malformed'],
    ['1|LIKE_LOVED|1|2', 'unknown-type'],
    ['1|like_liked|1|2', 'unknown-type'],
    ['1|LIKE_LIKEDX|1|2', 'unknown-type'],
    ['1|LIKE', 'malformed'],
    ['0|LIKE_LIKED|1|2', 'seq-zero'],
    ['1000001|LIKE_LIKED|1|2', 'seq-too-large'],
    ['99999999999999999999|LIKE_LIKED|1|2', 'malformed'],
    ['1|LIKE_LIKED|2147483648|2', 'user-too-large'],
    ['EVENT BEGIN', 'malformed'],
    ['EVENTUALLY', 'malformed'],
    ['\u0000\u00ff\u0001|||', 'malformed'],
  ];
  for (const [line, problem] of bad) {
    const seen = parse([`EVENT BEGIN\n${line}\n2|LIKE_LIKED|3|4\nEVENT END\n`]);
    t.deepEqual(seen.rejects, [problem], line);
    t.deepEqual(seen.events, ['2|0|3|4'], line);
    t.is(seen.ended, 1, line);
  }
});

test('over-long lines are dropped, whole or split over chunks, without buffering them', (t) => {
  const long = '1|LIKE_LIKED|' + '9'.repeat(10_000) + '|2';
  const one = parse([`EVENT BEGIN\n${long}\n2|LIKE_LIKED|3|4\nEVENT END\n`]);
  t.deepEqual(one.rejects, ['too-long']);
  t.deepEqual(one.events, ['2|0|3|4']);
  const pieces = [`EVENT BEGIN\n${long.slice(0, 50)}`, long.slice(50, 5000), long.slice(5000), '\n2|LIKE_LIKED|3|4\nEVENT END\n'];
  const split = parse(pieces);
  t.deepEqual(split.rejects, ['too-long']);
  t.deepEqual(split.events, ['2|0|3|4']);
  const justOver = '1|LIKE_LIKED|1|' + '2'.repeat(MAX_LINE_BYTES);
  t.deepEqual(parse([`EVENT BEGIN\n${justOver.slice(0, 10)}`, `${justOver.slice(10)}\n`]).rejects, ['too-long']);
  // A megabyte with no newline at all.
  const flood = parse(['EVENT BEGIN\n', Buffer.alloc(1 << 20, 0x41), Buffer.alloc(1 << 20, 0x41)]);
  t.deepEqual(flood.rejects, ['too-long']);
});

test('lines before EVENT BEGIN and after EVENT END are dropped', (t) => {
  const seen = parse(['1|LIKE_LIKED|1|2\nhello\nEVENT BEGIN\n2|LIKE_LIKED|1|2\nEVENT END\n3|LIKE_LIKED|1|2\nEVENT END\n']);
  t.deepEqual(seen.rejects, ['before-begin', 'before-begin', 'after-end', 'after-end']);
  t.deepEqual(seen.events, ['2|0|1|2']);
  t.is(seen.ended, 1);
});

test('random bytes never throw and never produce an event out of range', (t) => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), (chunks) => {
      const seen = parse(['EVENT BEGIN\n', ...chunks.map((c) => Buffer.from(c))], 1000);
      return seen.events.every((e) => {
        const [seq, , from, to] = e.split('|').map(Number);
        return seq! >= 1 && seq! <= 1000 && from! <= 0x7fffffff && to! <= 0x7fffffff;
      });
    }),
  );
  t.pass();
});
