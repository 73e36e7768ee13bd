// The WHO gateway over real sockets, byte by byte: every protocol rule of the README, and hostile
// clients (huge lines, binary, floods, half-closed and silent sockets).

import test from 'ava';
import { LocalMembership, readSettings, type Membership } from '../../../runtime/index.js';
import { whoGateway } from '../../../gateways/who/index.js';
import { WhoServer } from '../../../gateways/who/server.js';
import { RawClient, eventually, pause, silentLog, startWho } from './helpers.js';

const UNKNOWN = (quoted: string) => `ERR unknown command ${quoted}; expected WHO, WHERE, WHY or QUIT`;

test('WHY, WHERE and WHO answer one line each', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  await c.write('WHY\n');
  t.is(await c.lines(1), '42\n');
  await c.write('WHERE\n');
  t.is(await c.lines(2), `42\n${who.nodeId}\n`);
  await c.write('WHO\n');
  t.is(await c.lines(3), `42\n${who.nodeId}\n1\n`);
  await c.close();
  await who.gateway.stop();
});

test('a reply ends with the terminator of its command', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  await c.write('WHY\r\n');
  t.is(await c.lines(1), '42\r\n');
  await c.write('WHY\n');
  t.is(await c.lines(2), '42\r\n42\n');
  await c.close();
  await who.gateway.stop();
});

test('pipelined commands in one packet are answered in order, WHO included', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  await c.write('WHO\nWHERE\r\nWHY\nwho\nNOPE\nWHY\r\n');
  t.is(await c.lines(6), `1\n${who.nodeId}\r\n42\n1\n${UNKNOWN('"NOPE"')}\n42\r\n`);
  await c.close();
  await who.gateway.stop();
});

test('a command split across packets, byte by byte, is read once whole', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  for (const b of ['W', 'H', 'E', 'R', 'E', '\r', '\n', 'W', 'H', 'Y']) {
    await c.write(b);
    await pause(5);
  }
  await c.write('\n');
  t.is(await c.lines(2), `${who.nodeId}\r\n42\n`);
  await c.close();
  await who.gateway.stop();
});

test('case and surrounding spaces: any case, spaces and tabs around ignored, blank lines ignored', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  await c.write('  wHy \t\n\n   \r\n\twhere\nWhY\n');
  t.is(await c.lines(3), `42\n${who.nodeId}\n42\n`);
  await pause(30);
  t.is(c.text(), `42\n${who.nodeId}\n42\n`, 'no reply to blank lines');
  await c.close();
  await who.gateway.stop();
});

test('unknown commands and arguments get one ERR line and the connection goes on', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  await c.write('HELLO\nWHO are you\nW H Y\nWHY\n');
  t.is(await c.lines(4), `${UNKNOWN('"HELLO"')}\nERR WHO takes no arguments\n${UNKNOWN('"W H Y"')}\n42\n`);
  await c.close();
  await who.gateway.stop();
});

test('binary garbage is one escaped ERR line per line and the connection goes on', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  await c.write(Buffer.concat([Buffer.from([0, 1, 0xff, 0x1b, 0x5b, 0x32, 0x4a, 0x22]), Buffer.from('\nWHY\n')]));
  t.is(await c.lines(2), `${UNKNOWN('"\\x00\\x01\\xff\\x1b[2J\\""')}\n42\n`);
  await c.close();
  await who.gateway.stop();
});

test('a line over who-max-line gets an error, is discarded, and the connection goes on', async (t) => {
  const who = await startWho(t, { 'who-max-line': 16 });
  const c = await RawClient.connect(who.port);
  const tooLong = 'ERR line too long (more than 16 bytes); line discarded';
  await c.write('X'.repeat(16) + '\n' + 'X'.repeat(17) + '\r\nWHY\n');
  t.is(await c.lines(3), `${UNKNOWN(`"${'X'.repeat(16)}"`)}\n${tooLong}\r\n42\n`);
  await c.close();
  await who.gateway.stop();
});

test('an endless line (8 MiB, no newline) is refused at once and not buffered', async (t) => {
  const who = await startWho(t, { 'who-max-line': 1024 });
  const c = await RawClient.connect(who.port);
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  await c.write(chunk);
  // The error comes before any newline does.
  t.is(await c.lines(1), 'ERR line too long (more than 1024 bytes); line discarded\n');
  const before = process.memoryUsage().rss;
  for (let i = 0; i < 127; i++) await c.write(chunk);
  await c.write('\nWHY\n');
  t.is(await c.lines(2, 10_000), 'ERR line too long (more than 1024 bytes); line discarded\n42\n');
  // Generous: the 8 MiB must not have been kept (they would show as far more than this).
  t.true(process.memoryUsage().rss - before < 64 * 1024 * 1024);
  await c.close();
  await who.gateway.stop();
});

test('QUIT answers BYE, closes, and nothing after it is read', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  await c.write('WHY\nquit\r\nWHY\n');
  t.is(await c.untilClosed(), '42\nBYE\r\n');
  await who.gateway.stop();
});

test('QUIT waits for an earlier WHO before it closes', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  await c.write('WHO\nQUIT\n');
  t.is(await c.untilClosed(), '1\nBYE\n');
  await who.gateway.stop();
});

test('a half-closed client still gets every reply, the unterminated last line included', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port, { allowHalfOpen: true });
  await c.write('WHO\nWHERE\nWHY');
  c.socket.end();
  t.is(await c.untilClosed(), `1\n${who.nodeId}\n42\n`);
  await who.gateway.stop();
});

// Serial: it measures time, so it must not share the event loop with the flood tests.
test.serial('an idle connection is told and closed after who-idle-timeout; a busy one stays', async (t) => {
  const who = await startWho(t, { 'who-idle-timeout': 400 });
  const idle = await RawClient.connect(who.port);
  const busy = await RawClient.connect(who.port);
  for (let i = 0; i < 16; i++) {
    t.is(await busy.ask('WHY'), '42');
    await pause(50);
  }
  t.is(await idle.untilClosed(), 'ERR idle for 400 ms; closing\n');
  t.false(busy.isClosed);
  await busy.close();
  await who.gateway.stop();
});

test('beyond who-max-connections a client is told and closed, and not counted', async (t) => {
  const who = await startWho(t, { 'who-max-connections': 2 });
  const a = await RawClient.connect(who.port);
  const b = await RawClient.connect(who.port);
  // The client's connect can complete before the server has accepted: wait for the count.
  await eventually(async () => (await a.ask('WHO')) === '2', 3000, 'WHO to reach 2');
  const c = await RawClient.connect(who.port);
  t.is(await c.untilClosed(), 'ERR too many connections (limit 2); try again later\r\n');
  t.is(await a.ask('WHO'), '2');
  await b.close();
  await eventually(async () => (await a.ask('WHO')) === '1', 3000, 'WHO to drop to 1');
  const d = await RawClient.connect(who.port);
  t.is(await d.ask('WHY'), '42', 'a slot freed is usable again');
  await a.close();
  await d.close();
  await who.gateway.stop();
});

test('WHO follows connects and disconnects', async (t) => {
  const who = await startWho(t);
  const clients = await Promise.all([1, 2, 3, 4].map(() => RawClient.connect(who.port)));
  await eventually(async () => (await clients[0]!.ask('WHO')) === '4', 3000, 'WHO to reach 4');
  await clients[3]!.close();
  await clients[2]!.write('QUIT\n');
  await clients[2]!.untilClosed();
  await eventually(async () => (await clients[0]!.ask('WHO')) === '2', 3000, 'WHO to drop to 2');
  t.is(await clients[1]!.ask('WHO'), '2');
  await Promise.all(clients.map((c) => c.close()));
  await eventually(() => (who.membership as LocalMembership).sumGauge('who.connections').then((n) => n === 0), 3000, 'gauge at 0');
  await who.gateway.stop();
});

test('a flood of pipelined commands from a client that does not read is answered in full, in order', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  c.socket.pause(); // do not read: the server must push back rather than buffer without bound
  const n = 200_000;
  const lines = ['WHY\n', 'WHO\n', 'WHERE\r\n'];
  const payload = Buffer.from(Array.from({ length: n }, (_, i) => lines[i % 3]).join(''));
  const written = c.write(payload);
  await pause(200);
  c.socket.resume();
  await written;
  const expected = Array.from({ length: n }, (_, i) => ['42\n', '1\n', `${who.nodeId}\r\n`][i % 3]).join('');
  await c.bytes(expected.length, 20_000);
  t.is(c.text(), expected);
  await c.close();
  await who.gateway.stop();
});

test('a storm of short-lived connections leaves the count exact', async (t) => {
  const who = await startWho(t);
  const watcher = await RawClient.connect(who.port);
  for (let round = 0; round < 5; round++) {
    const burst = await Promise.all(Array.from({ length: 40 }, () => RawClient.connect(who.port)));
    await Promise.all(burst.map((c, i) => (i % 2 ? c.close() : c.write('WHO\nQUIT\n').then(() => c.untilClosed()))));
  }
  await eventually(async () => (await watcher.ask('WHO')) === '1', 3000, 'WHO back to 1');
  t.pass();
  await watcher.close();
  await who.gateway.stop();
});

test('stop answers what was sent, tells each client, closes, and frees the port', async (t) => {
  const who = await startWho(t);
  const c = await RawClient.connect(who.port);
  t.is(await c.ask('WHY'), '42');
  await who.gateway.stop();
  t.is(await c.untilClosed(), 'ERR server shutting down\n');
  await t.throwsAsync(RawClient.connect(who.port));
  t.is(await who.gateway.notReady?.(), 'the WHO port is not listening');
});

test('WHO answers an ERR line when the cluster count fails or hangs, and the connection goes on', async (t) => {
  const failing: Membership = {
    self: 'n',
    members: () => ['n'],
    setGauge() {},
    sumGauge: () => Promise.reject(new Error('redis down')),
    onChange: () => () => {},
  };
  const hanging: Membership = { ...failing, sumGauge: () => new Promise<number>(() => {}) };
  for (const membership of [failing, hanging]) {
    const server = new WhoServer({ host: '127.0.0.1', port: 0, nodeId: 'n', membership, idleTimeoutMs: 0, maxConnections: 10, maxLineBytes: 64, whoTimeoutMs: 50, log: silentLog });
    t.teardown(() => server.stop());
    const port = await server.listen();
    const c = await RawClient.connect(port);
    await c.write('WHO\nWHY\n');
    t.is(await c.lines(2), 'ERR cluster connection count unavailable; try again\n42\n');
    await c.close();
    await server.stop();
  }
});

test('settings: defaults, flags and environment, and bad values refused at the door', (t) => {
  const { values } = readSettings(whoGateway.settings, { argv: [], env: {} });
  t.is(values['who-port'], 4242);
  t.is(values['who-idle-timeout'], 300_000);
  t.is(values['who-max-connections'], 10_000);
  t.is(values['who-max-line'], 1024);
  const set = readSettings(whoGateway.settings, { argv: ['--who-port', '0', '--who-idle-timeout', '30s'], env: { TROUPE_WHO_MAX_CONNECTIONS: '50000' } }).values;
  t.deepEqual([set['who-port'], set['who-idle-timeout'], set['who-max-connections']], [0, 30_000, 50_000]);
  t.throws(() => readSettings(whoGateway.settings, { argv: ['--who-max-line', '2'], env: {} }), { message: /who-max-line/ });
});

test('metrics count commands, errors and connections', async (t) => {
  const who = await startWho(t, { 'who-max-line': 16 });
  const c = await RawClient.connect(who.port);
  await c.write('WHY\nWHY\nWHO\nHUH\n' + 'X'.repeat(20) + '\n');
  await c.lines(5);
  const text = await who.metrics.metrics();
  t.regex(text, /troupe_who_commands_total\{command="WHY"\} 2/);
  t.regex(text, /troupe_who_commands_total\{command="WHO"\} 1/);
  t.regex(text, /troupe_who_errors_total\{reason="bad-command"\} 1/);
  t.regex(text, /troupe_who_errors_total\{reason="line-too-long"\} 1/);
  t.regex(text, /troupe_who_connections 1/);
  await c.close();
  await who.gateway.stop();
});
