// A WHO client that sends only errors: told and closed after who-max-errors in a row; a client
// whose errors are broken by good commands goes on.

import test from 'ava';
import { RawClient, startWho } from './helpers.js';

const UNKNOWN = (quoted: string) => `ERR unknown command ${quoted}; expected WHO, WHERE, WHY or QUIT`;
const CLOSING = (n: number) => `ERR ${n} errors in a row; closing (send WHO, WHERE, WHY or QUIT)`;

test('16 bad commands in a row (the default) are answered, then the client is told and closed', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  t.teardown(() => c.socket.destroy());
  // A flood in one packet: nothing past the 16th line is read.
  await c.write('NOPE\n'.repeat(1000) + 'WHY\n');
  const got = await c.untilClosed();
  t.is(got, `${UNKNOWN('"NOPE"')}\n`.repeat(16) + `${CLOSING(16)}\n`);
});

test('over-long lines count as errors too, with who-max-errors 3', async (t) => {
  const who = await startWho(t, { 'who-max-errors': 3, 'who-max-line': 16 });
  const c = await RawClient.connect(who.port);
  t.teardown(() => c.socket.destroy());
  await c.write('X'.repeat(40) + '\r\nBAD\nY'.repeat(1) + 'Y'.repeat(40) + '\n');
  const got = await c.untilClosed();
  t.regex(got, /^ERR line too long[^\n]*\r\nERR unknown command "BAD"[^\n]*\nERR line too long[^\n]*\nERR 3 errors in a row; closing/);
});

test('errors broken by a good command do not add up', async (t) => {
  const who = await startWho(t, { 'who-max-errors': 3 });
  const c = await RawClient.connect(who.port);
  t.teardown(() => c.socket.destroy());
  await c.write('A\nB\nWHY\nC\nD\nWHY\n');
  t.is(await c.lines(6), `${UNKNOWN('"A"')}\n${UNKNOWN('"B"')}\n42\n${UNKNOWN('"C"')}\n${UNKNOWN('"D"')}\n42\n`);
  t.false(c.socket.destroyed);
  await c.close();
});
