// The dating gateway in listen mode on a real node: the contract example, rounds one after
// another, and every bad input of the issue, each with what the Event Listener is told.

import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { generateRound, type GeneratedRound } from '../../../gateways/dating/generator.js';
import { dialAsHarness } from '../../../gateways/dating/harness.js';
import { datingGateway, listenForRounds, type DatingServers } from '../../../gateways/dating/index.js';
import { actorDecider } from '../../../gateways/dating/round.js';
import { startNode, type TroupeNode } from '../../../runtime/index.js';
import { closed, dial, readAll, recordingLog, waitFor } from './support.js';

const EXAMPLE_LINES = [
  '1|LIKE_UNSPECIFIED|300|100',
  '2|LIKE_LIKED|100|200',
  '3|LIKE_NOT_LIKED|300|200',
  '4|LIKE_LIKED|200|100',
  '5|LIKE_LIKED|300|100',
  '6|LIKE_UNSPECIFIED|200|300',
  '7|LIKE_LIKED|100|300',
];

function fixedRound(body: string[], expected: number[]): GeneratedRound {
  const text = 'EVENT BEGIN\n' + body.map((l) => l + '\n').join('') + 'EVENT END\n';
  return { chunks: [Buffer.from(text, 'latin1')], expected: Int32Array.from(expected), bytes: text.length };
}

let node: TroupeNode;
let servers: DatingServers;
let dataDir: string;
const log = recordingLog();

test.before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'troupe-dating-test-'));
  node = await startNode({ dataDir, actorModules: datingGateway.actorModules, shards: 2 });
  servers = await listenForRounds({ decider: actorDecider(node), log, host: '127.0.0.1', sourcePort: 0, listenerPort: 0, maxSeq: 10_000_000, sourceIdleMs: 5_000, listenerWaitMs: 300 });
});

test.after.always(async () => {
  await servers?.stop();
  await node?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const harness = (round: GeneratedRound) => dialAsHarness(round, { host: '127.0.0.1', sourcePort: servers.sourcePort, listenerPort: servers.listenerPort, timeoutMs: 20_000 });

async function roundOver(): Promise<void> {
  for (let i = 0; i < 200 && servers.current; i++) await new Promise((r) => setTimeout(r, 10));
}

/** A listener that says MATCH BEGIN and collects what it is sent until the gateway closes it. */
async function listener(): Promise<{ socket: Socket; text: Promise<string> }> {
  const socket = await dial(servers.listenerPort);
  const text = readAll(socket);
  socket.write('MATCH BEGIN\n');
  return { socket, text };
}

async function source(lines: string[], end = true): Promise<Socket> {
  const socket = await dial(servers.sourcePort);
  socket.write('EVENT BEGIN\n' + lines.map((l) => l + '\n').join('') + (end ? 'EVENT END\n' : ''));
  return socket;
}

test.serial('the contract example: matches 4 and 7, MATCH END - OK', async (t) => {
  const r = await harness(fixedRound([...EXAMPLE_LINES].reverse(), [4, 7]));
  t.is(r.answer, 'MATCH END - OK');
  t.is(r.matchesReceived, 2);
  await roundOver();
});

test.serial('generated rounds one after another, each shuffle mode', async (t) => {
  for (const [i, shuffle] of (['full', 'windowed', 'none'] as const).entries()) {
    const round = generateRound({ events: 20_000, users: 60, seed: 10 + i, shuffle, window: 500, answerRate: 0.2 });
    const r = await harness(round);
    t.is(r.answer, 'MATCH END - OK', `${shuffle}: ${r.problem ?? ''}`);
    t.true(r.matchesExpected > 10);
    await roundOver();
  }
});

test.serial('malformed, over-long, unknown-type, seq 0 and duplicate lines are dropped; the round still ends OK', async (t) => {
  const body = [
    '1|LIKE_UNSPECIFIED|300|100',
    'garbage',
    '2|LIKE_LIKED|100|200',
    '0|LIKE_LIKED|200|100',
    '3|LIKE_FOO|300|200',
    '3|LIKE_NOT_LIKED|300|200',
    'x'.repeat(5000),
    '4|LIKE_LIKED|200|100',
    '2|LIKE_LIKED|100|200',
    '5|LIKE_LIKED|300|100',
    '6|LIKE_UNSPECIFIED|200|300',
    '4|LIKE_LIKED|200|100',
    '7|LIKE_LIKED|100|300',
  ];
  const r = await harness(fixedRound(body, [4, 7]));
  t.is(r.answer, 'MATCH END - OK');
  t.true(log.messages.includes('event source line dropped'));
  await roundOver();
});

test.serial('a source that disconnects before EVENT END: matches up to the first missing event, then the listener is closed', async (t) => {
  const l = await listener();
  const s = await source(['1|LIKE_LIKED|1|2', '2|LIKE_LIKED|2|1', '4|LIKE_LIKED|1|2'], false);
  await waitFor(l.socket, '2\n');
  s.end();
  t.is(await l.text, '2\n');
  await roundOver();
  t.true(log.messages.some((m) => m.startsWith('event source disconnected before EVENT END')));
});

test.serial('EVENT END with a sequence number missing: the same, and the next round works', async (t) => {
  const l = await listener();
  await source(['1|LIKE_LIKED|1|2', '2|LIKE_LIKED|2|1', '4|LIKE_LIKED|1|2', '5|LIKE_LIKED|2|1']);
  t.is(await l.text, '2\n');
  await roundOver();
  const r = await harness(fixedRound(EXAMPLE_LINES, [4, 7]));
  t.is(r.answer, 'MATCH END - OK');
  await roundOver();
});

test.serial('a listener that connects late gets every match from the first', async (t) => {
  const s = await source(EXAMPLE_LINES);
  await new Promise((r) => setTimeout(r, 100));
  const l = await listener();
  await waitFor(l.socket, '7\n');
  l.socket.write('MATCH END - OK\n');
  const text = await l.text;
  t.is(text, '4\n7\n');
  s.destroy();
  await roundOver();
});

test.serial('before any round a newer listener replaces the older one, which is closed; the newer one is served', async (t) => {
  const older = await listener();
  const newer = await listener();
  t.is(await older.text, '', 'a stray early connection must not lock the real listener out');
  const s = await source(EXAMPLE_LINES);
  await waitFor(newer.socket, '7\n');
  newer.socket.write('MATCH END - OK\n');
  t.is(await newer.text, '4\n7\n');
  s.destroy();
  await roundOver();
});

test.serial('a listener that leaves without MATCH END: the next one gets the round from its first match', async (t) => {
  const first = await listener();
  const s = await source(EXAMPLE_LINES);
  await waitFor(first.socket, '7\n');
  first.socket.destroy();
  await closed(first.socket);
  await new Promise((r) => setTimeout(r, 20));
  const again = await listener();
  await waitFor(again.socket, '7\n');
  again.socket.write('MATCH END - OK\n');
  t.is(await again.text, '4\n7\n');
  s.destroy();
  await roundOver();
});

test.serial('no listener at all: the decided round is dropped after the listener wait; the next round works', async (t) => {
  const s1 = await source(EXAMPLE_LINES);
  await new Promise((r) => setTimeout(r, 100));
  t.truthy(servers.current);
  await new Promise((r) => setTimeout(r, 400));
  t.is(servers.current, undefined);
  t.true(log.messages.some((m) => m.startsWith('round abandoned')));
  const r = await harness(fixedRound(EXAMPLE_LINES, [4, 7]));
  t.is(r.answer, 'MATCH END - OK');
  s1.destroy();
  await roundOver();
});

test.serial('a new source while the last round waits: its listener, if sent nothing yet, moves to the new round', async (t) => {
  const s1 = await source(['1|LIKE_LIKED|1|2']);
  await new Promise((r) => setTimeout(r, 50));
  const l = await listener();
  await new Promise((r) => setTimeout(r, 50));
  const s2 = await source(EXAMPLE_LINES);
  await waitFor(l.socket, '7\n');
  l.socket.write('MATCH END - OK\n');
  t.is(await l.text, '4\n7\n');
  s1.destroy();
  s2.destroy();
  await roundOver();
});

test.serial('a second source during a round is closed at once; the round goes on', async (t) => {
  const l = await listener();
  const s1 = await source(EXAMPLE_LINES.slice(0, 4), false);
  const s2 = await dial(servers.sourcePort);
  t.is(await readAll(s2), '');
  s1.write(EXAMPLE_LINES.slice(4).map((x) => x + '\n').join('') + 'EVENT END\n');
  await waitFor(l.socket, '7\n');
  l.socket.write('MATCH END - OK\n');
  t.is(await l.text, '4\n7\n');
  t.true(log.messages.includes('a second event source connected during a round; closed it'));
  s1.destroy();
  await roundOver();
});

test.serial('a listener answering MATCH END - ERROR ends the round as error; the next works', async (t) => {
  const l = await listener();
  const s = await source(EXAMPLE_LINES);
  await waitFor(l.socket, '4\n');
  l.socket.write('MATCH END - ERROR\n');
  await l.text;
  s.destroy();
  await roundOver();
  t.true(log.messages.includes('round error'));
  const r = await harness(fixedRound(EXAMPLE_LINES, [4, 7]));
  t.is(r.answer, 'MATCH END - OK');
});

test.serial('a silent source is disconnected after the idle time; the listener gets what was decided, then EOF', async (t) => {
  const quick = await listenForRounds({ decider: actorDecider(node), log, host: '127.0.0.1', sourcePort: 0, listenerPort: 0, maxSeq: 1000, sourceIdleMs: 200 });
  try {
    const l = await dial(quick.listenerPort);
    const text = readAll(l);
    l.write('MATCH BEGIN\n');
    const s = await dial(quick.sourcePort);
    s.write('EVENT BEGIN\n1|LIKE_LIKED|1|2\n2|LIKE_LIKED|2|1\n');
    t.is(await text, '2\n');
    await closed(s);
    t.true(log.messages.some((m) => m.startsWith('event source disconnected before EVENT END')));
  } finally {
    await quick.stop();
  }
});
