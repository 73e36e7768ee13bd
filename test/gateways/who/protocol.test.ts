// The WHO line reader without sockets: terminators, case and spaces, over-long and hostile input,
// and the property that how a stream is cut into chunks never changes what it means.

import test from 'ava';
import fc from 'fast-check';
import { LineReader, interpretLine, quoteForError, type LineEvent } from '../../../gateways/who/protocol.js';

function read(chunks: Array<string | Buffer>, maxLine = 16, atEnd = true): LineEvent[] {
  const reader = new LineReader(maxLine);
  const events: LineEvent[] = [];
  for (const c of chunks) reader.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : c, (e) => events.push(e));
  if (atEnd) reader.end((e) => events.push(e));
  return events;
}

function show(events: LineEvent[]): string[] {
  return events.map((e) => (e.kind === 'command' ? e.command : 'ERR ' + e.message) + (e.crlf ? ' crlf' : ''));
}

test('commands with \\n and \\r\\n, in order, each remembering its terminator', (t) => {
  t.deepEqual(show(read(['WHO\nWHERE\r\nWHY\nQUIT\r\n'])), ['WHO', 'WHERE crlf', 'WHY', 'QUIT crlf']);
});

test('case-insensitive, spaces and tabs around ignored, blank lines ignored', (t) => {
  t.deepEqual(show(read(['  wHo \t\n\twhy\n\n \r\n\t\n'])), ['WHO', 'WHY']);
});

test('arguments, inner spaces and near-misses are errors', (t) => {
  t.deepEqual(show(read(['WHO now\nW HO\nWHOM\nWH\n'], 64)), [
    'ERR WHO takes no arguments',
    'ERR unknown command "W HO"; expected WHO, WHERE, WHY or QUIT',
    'ERR unknown command "WHOM"; expected WHO, WHERE, WHY or QUIT',
    'ERR unknown command "WH"; expected WHO, WHERE, WHY or QUIT',
  ]);
});

test('a \\r not right before \\n is content, not a terminator', (t) => {
  t.deepEqual(show(read(['WHO\rWHY\n'], 64)), ['ERR unknown command "WHO\\x0dWHY"; expected WHO, WHERE, WHY or QUIT']);
  t.deepEqual(show(read(['WHY\r\r\n'], 64)), ['ERR unknown command "WHY\\x0d"; expected WHO, WHERE, WHY or QUIT crlf']);
});

test('non-ASCII look-alikes are not commands (no Unicode case folding)', (t) => {
  // "WHY" with a Cyrillic/fullwidth letter, and "why" in latin1 upper range bytes.
  t.deepEqual(show(read([Buffer.from('WHＹ\n', 'utf8'), Buffer.from([0xd7, 0x48, 0x59, 10])], 64)).map((s) => s.slice(0, 19)), [
    'ERR unknown command',
    'ERR unknown command',
  ]);
});

test('error lines quote at most 32 bytes and escape everything not printable', (t) => {
  t.is(quoteForError(Buffer.from([0, 0xff, 0x22, 0x5c, 0x41])), '"\\x00\\xff\\"\\\\A"');
  t.is(quoteForError(Buffer.alloc(100, 0x41)), `"${'A'.repeat(32)}..."`);
});

test('a line of exactly maxLine bytes is read; one byte more is refused', (t) => {
  const max = 16;
  const exact = 'X'.repeat(max);
  t.deepEqual(show(read([exact + '\n', exact + '\r\n'], max)).map((s) => s.slice(0, 20)), ['ERR unknown command ', 'ERR unknown command ']);
  t.deepEqual(show(read([exact + 'X\nWHY\n'], max)), ['ERR line too long (more than 16 bytes); line discarded', 'WHY']);
  t.deepEqual(show(read(['X'.repeat(max + 1) + '\r\nWHY\n'], max)), ['ERR line too long (more than 16 bytes); line discarded crlf', 'WHY']);
});

test('the \\r of a maxLine line may arrive alone and its \\n later', (t) => {
  const max = 5;
  t.deepEqual(show(read(['WHERE', '\r', '\nWHY\n'], max)), ['WHERE crlf', 'WHY']);
  t.deepEqual(show(read(['WHERE\r', 'X\nWHY\n'], max)), ['ERR line too long (more than 5 bytes); line discarded', 'WHY']);
});

test('an endless line is refused once, as soon as it passes the limit, and never buffered', (t) => {
  const reader = new LineReader(1024);
  const events: LineEvent[] = [];
  const chunk = Buffer.alloc(65536, 0x41);
  for (let i = 0; i < 160; i++) {
    // 10 MiB without a newline
    reader.push(chunk, (e) => events.push(e));
    t.true(reader.heldBytes <= 1025);
  }
  t.is(events.length, 1);
  t.true(events[0]!.kind === 'error' && events[0]!.message.startsWith('line too long'));
  reader.push(Buffer.from('AAAA\nWHY\n'), (e) => events.push(e));
  t.deepEqual(show(events.slice(1)), ['WHY']);
});

test('a held partial line that then overflows in the chunk carrying its \\n is refused without joining', (t) => {
  t.deepEqual(show(read(['WH', 'X'.repeat(100) + '\nWHY\n'], 16)), ['ERR line too long (more than 16 bytes); line discarded', 'WHY']);
});

test('an unterminated last line counts at end of stream; a discarded one does not', (t) => {
  t.deepEqual(show(read(['WHO\nWHY'])), ['WHO', 'WHY']);
  t.deepEqual(show(read(['WHY\n' + 'X'.repeat(40)], 16)), ['WHY', 'ERR line too long (more than 16 bytes); line discarded']);
  t.deepEqual(show(read(['   '])), []);
});

test('interpretLine reads only within the bounds it is given', (t) => {
  const b = Buffer.from('xxWHYyy');
  const e = interpretLine(b, 2, 5, false);
  t.deepEqual(e, { kind: 'command', command: 'WHY', crlf: false });
});

test('property: any cutting of a stream into chunks gives the same events as one chunk', (t) => {
  const piece = fc.oneof(
    fc.constantFrom('WHO', 'where', ' WhY ', 'QUIT', 'HELLO', 'WHO x', '', '\t'),
    fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a).toString('latin1')),
  );
  const line = fc.tuple(piece, fc.constantFrom('\n', '\r\n'));
  fc.assert(
    fc.property(fc.array(line, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 20 }), (lines, cuts) => {
      const bytes = Buffer.from(lines.map(([p, term]) => p + term).join(''), 'latin1');
      const whole = show(read([bytes], 24));
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let at = 0;
      for (const p of points) {
        chunks.push(bytes.subarray(at, p));
        at = p;
      }
      chunks.push(bytes.subarray(at));
      const cut = show(read(chunks, 24));
      // The terminator style of an over-long line's error is a guess when it is refused before its
      // \n arrives; everything else must match exactly.
      const strip = (xs: string[]) => xs.map((x) => (x.startsWith('ERR line too long') ? 'ERR line too long' : x));
      t.deepEqual(strip(cut), strip(whole));
    }),
    { numRuns: 300 },
  );
});

test('property: hostile bytes never make the reader hold more than maxLine + 1 bytes', (t) => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 50 }), (chunks) => {
      const reader = new LineReader(32);
      for (const c of chunks) {
        reader.push(Buffer.from(c), () => {});
        if (reader.heldBytes > 33) return false;
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.pass();
});
