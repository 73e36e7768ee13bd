// `troupe inspect` on a node of its own (no Redis): every command against a real node started in
// this process with its inspector on a free port, bad input that fails one command and leaves the
// session going, a read-only inspector, and a node that cannot be reached.

import test, { type ExecutionContext } from 'ava';
import { startNode, type TroupeNode } from '../../../runtime/index.js';
import { InspectSession, splitCommands, type CommandResult } from '../../../runtime/inspector/session.js';
import { COUNTER, eventually, PROBE, tempDir } from '../helpers.js';

const LEDGER = new URL('./fixtures/ledger.js', import.meta.url).href;

async function inspectedNode(t: ExecutionContext, mode: 'full' | 'read-only' = 'full'): Promise<TroupeNode> {
  const node = await startNode({
    dataDir: tempDir('troupe-inspect-'),
    shards: 2,
    actorModules: [COUNTER, PROBE, LEDGER],
    inspector: { mode, host: '127.0.0.1', port: 0, ports: () => ({ 'who.who': 4242 }) },
  });
  t.teardown(() => node.stop());
  return node;
}

function sessionOn(t: ExecutionContext, address: string, o: { timeoutMs?: number } = {}): InspectSession {
  const session = new InspectSession({ seed: address, timeoutMs: o.timeoutMs ?? 5000, askTimeoutMs: 5000 });
  t.teardown(() => session.close());
  return session;
}

/** Runs a command that must succeed and returns its result. */
async function ok(t: ExecutionContext, session: InspectSession, line: string): Promise<CommandResult> {
  const r = (await session.run(line))!;
  t.true(r.ok, `${line}: ${r.error}`);
  return r;
}

async function fails(t: ExecutionContext, session: InspectSession, line: string, error: RegExp): Promise<void> {
  const r = (await session.run(line))!;
  t.false(r.ok, `${line} should fail`);
  t.regex(r.error ?? '', error, line);
}

test('nodes, stats, ring, partitions and where describe the node as it is', async (t) => {
  const node = await inspectedNode(t);
  t.truthy(node.clusterPort);
  const s = sessionOn(t, `127.0.0.1:${node.clusterPort}`);
  await node.ref('counter', 'a').ask('add', 2);

  const nodes = await ok(t, s, 'nodes');
  const [me] = nodes.data as { nodeId: string; current: boolean; node: { shards: number; partitions: number; cluster: string; ports: { name: string; port: number }[]; actorTypes: { name: string; handlers: string[] }[] } }[];
  t.is(me!.nodeId, node.nodeId);
  t.true(me!.current);
  t.is(me!.node.shards, 2);
  t.is(me!.node.cluster, '');
  t.deepEqual(me!.node.ports, [{ name: 'who.who', port: 4242 }]);
  t.deepEqual(me!.node.actorTypes.map((a) => a.name).sort(), ['counter', 'ledger', 'probe']);
  t.regex(nodes.text, /1 node on its own \(no cluster\)/);
  t.regex(nodes.text, /who\.who 4242/);

  const stats = await ok(t, s, 'stats');
  const [st] = stats.data as { shards: { activations: number; turns: number }[] }[];
  t.is(st!.shards.length, 2);
  t.is(st!.shards.reduce((n, sh) => n + sh.activations, 0), 1);
  t.true(st!.shards.reduce((n, sh) => n + sh.turns, 0) >= 1);
  t.regex(stats.text, /shard +actors +turns/);

  const ring = await ok(t, s, 'ring');
  t.like(ring.data as object, { epoch: 0, members: [node.nodeId], partitions: 1024, servedByNone: [], servedByMany: [] });
  t.regex(ring.text, /every partition is served by exactly one node/);

  const parts = await ok(t, s, 'partitions');
  const [p] = parts.data as { owns: number[]; serving: number[]; acquiring: number[] }[];
  t.is(p!.owns.length, 1024);
  t.is(p!.serving.length, 1024);
  t.deepEqual(p!.acquiring, []);
  t.regex(parts.text, /serving +1024: all it owns/);

  const where = await ok(t, s, 'where counter/a');
  const partition = node.ref('counter', 'a').partition;
  t.like(where.data as object, { id: 'counter/a', partition, shard: partition % 2, owner: node.nodeId, servedBy: [node.nodeId] });
  t.like((await ok(t, s, 'where 17')).data as object, { partition: 17, owner: node.nodeId });
  await fails(t, s, 'where 5000', /partition 5000 does not exist: this cluster has 1024/);
});

test('ask and tell reach actors; actors lists them; state shows live and stored states, Maps and all, bounded', async (t) => {
  const node = await inspectedNode(t);
  const s = sessionOn(t, `127.0.0.1:${node.clusterPort}`);

  const asked = await ok(t, s, 'ask counter/a add 5');
  t.is((asked.data as { reply: unknown }).reply, 5);
  t.is(asked.text, '5');
  const told = await ok(t, s, 'tell counter/a add 2');
  t.regex(told.text, /told counter\/a add through/);
  t.true(await eventually(async () => (await node.ref('counter', 'a').ask('get')) === 7));
  // A message with spaces, quotes and semicolons inside its JSON string.
  await ok(t, s, 'ask ledger/l1 add {"account": "ann; bob", "tag": "x y", "amount": 10}');
  t.like((await ok(t, s, 'ask ledger/l1 note "a note"')).data as object, { reply: undefined });
  const accounts = await ok(t, s, 'ask ledger/l1 accounts');
  t.deepEqual((accounts.data as { reply: unknown }).reply, { $type: 'Map', size: 1, entries: [['ann; bob', { $type: 'Set', size: 1, values: ['x y'] }]] });

  const actors = await ok(t, s, 'actors');
  t.deepEqual((actors.data as { actors: { id: string }[] }).actors.map((a) => a.id).sort(), ['counter/a', 'ledger/l1']);
  const counters = await ok(t, s, 'actors counter');
  t.deepEqual((counters.data as { actors: { id: string; nodeId: string }[] }).actors, [{ id: 'counter/a', nodeId: node.nodeId }]);
  for (let i = 0; i < 5; i++) node.ref('probe', `p${i}`).tell('hit');
  t.true(await eventually(async () => (await node.listActors({ type: 'probe' })).length === 5));
  const two = await ok(t, s, 'actors probe 2');
  t.is((two.data as { actors: unknown[]; more: boolean }).actors.length, 2);
  t.true((two.data as { more: boolean }).more);
  t.regex(two.text, /the first 2; there are more/);

  const live = await ok(t, s, 'state counter/a');
  t.like(live.data as object, { found: 'active', storage: 'durable', servedHere: true, state: { n: 7, log: [] } });
  t.regex(live.text, /counter\/a: partition \d+, shard \d, live on/);

  // The ledger passivates after 200 ms idle: its state then comes from its snapshot, tags intact.
  t.true(await eventually(async () => !(await node.listActors({ type: 'ledger' })).includes('ledger/l1'), 5000, 50));
  const stored = await ok(t, s, 'state ledger/l1');
  t.like(stored.data as object, { found: 'stored', storage: 'durable' });
  t.deepEqual((stored.data as { state: unknown }).state, {
    entries: { $type: 'Map', size: 1, entries: [['ann; bob', { $type: 'Set', size: 1, values: ['x y'] }]] },
    opened: { $type: 'Date', iso: '2026-01-01T00:00:00.000Z' },
    total: { $type: 'BigInt', value: '10' },
    notes: ['a note'],
  });
  t.regex(stored.text, /stored on .* \(durable, passivated/);
  t.false(await node.listActors({ type: 'ledger' }).then((ids) => ids.includes('ledger/l1')), 'reading a stored state does not activate the actor');

  const none = await ok(t, s, 'state probe/never');
  t.like(none.data as object, { found: 'none', storage: 'volatile' });
  t.regex(none.text, /not live on any node/);

  // A state far larger than the budget comes back cut, and says so.
  await ok(t, s, 'ask ledger/big bloat 20000');
  const big = await ok(t, s, 'state ledger/big');
  t.true((big.data as { truncated: boolean }).truncated);
  t.true(big.text.length < 80 * 1024, `${big.text.length} characters`);
  t.regex(big.text, /cut to fit/);
});

test('bad input fails that command with what to do, and the session goes on', async (t) => {
  const node = await inspectedNode(t);
  const s = sessionOn(t, `127.0.0.1:${node.clusterPort}`);
  await fails(t, s, 'frobnicate', /unknown command "frobnicate"; the commands are help, nodes/);
  await fails(t, s, 'ask counter/a add {"by": }', /the message is not valid JSON .*write it as JSON/);
  await fails(t, s, 'ask counter/a add ann', /not valid JSON/);
  await fails(t, s, 'ask nosuch/a add 1', /no actor type "nosuch" is registered \(known: .*counter/);
  await fails(t, s, 'state nosuch/a', /no actor type "nosuch"/);
  await fails(t, s, 'actors nosuch', /no actor type "nosuch"/);
  await fails(t, s, 'ask counter/a nohandler', /actor type "counter" has no handler "nohandler" \(handlers: add, get/);
  await fails(t, s, 'ask counter', /"counter" is not an actor id: expected "type\/key"; usage: ask/);
  await fails(t, s, 'ask counter/a', /a handler is missing; usage: ask/);
  await fails(t, s, 'state', /an actor id is missing; usage: state/);
  await fails(t, s, 'actors counter 0', /the limit must be 1 to 1000/);
  await fails(t, s, 'actors counter 1 2', /unexpected "2"/);
  await fails(t, s, 'use nobody', /no member is "nobody"; the members are/);
  await fails(t, s, 'use 7', /there is no node number 7: there are 1/);
  await fails(t, s, 'stats nobody', /no member is "nobody"/);
  // A handler that throws: the ask fails with the actor's error, the state is unchanged.
  await fails(t, s, 'ask ledger/l refuse "no reason"', /ask ledger\/l refuse failed: Error \[REFUSED\]: refused: no reason/);
  // Blank lines and comments are nothing; help and the session still work.
  t.is(await s.run('   '), undefined);
  t.is(await s.run('# a comment'), undefined);
  t.regex((await ok(t, s, 'help')).text, /ask <type\/key> <handler> \[json\]/);
  t.is((await ok(t, s, 'ask counter/a add 1')).text, '1');
  t.deepEqual(splitCommands('stats; ask a/b c {"x": "1;2"}\nring ;; # note'), ['stats', 'ask a/b c {"x": "1;2"}', 'ring']);
  t.false(s.finished);
  await ok(t, s, 'quit');
  t.true(s.finished);
});

test('a read-only inspector answers every question and refuses ask and tell', async (t) => {
  const node = await inspectedNode(t, 'read-only');
  const s = sessionOn(t, `127.0.0.1:${node.clusterPort}`);
  await node.ref('counter', 'a').ask('add', 3);
  t.like((await ok(t, s, 'state counter/a')).data as object, { state: { n: 3 } });
  t.regex((await ok(t, s, 'nodes')).text, /read-only/);
  await fails(t, s, 'ask counter/a add 1', /read-only \(--inspector read-only\): it sends no ask or tell/);
  await fails(t, s, 'tell counter/a add 1', /read-only/);
  t.is(await node.ref('counter', 'a').ask('get'), 3);
});

test('a node that cannot be reached fails each command with a clear error; once it stops, the same', async (t) => {
  const nowhere = sessionOn(t, '127.0.0.1:1', { timeoutMs: 2000 });
  for (const line of ['nodes', 'stats', 'ask counter/a add 1']) {
    await fails(t, nowhere, line, /node 127\.0\.0\.1:1 is unreachable \(connect ECONNREFUSED 127\.0\.0\.1:1\); is a troupe node running there, and is this its cluster port\?/);
  }
  const node = await startNode({ dataDir: tempDir('troupe-inspect-'), shards: 1, actorModules: [COUNTER], inspector: { mode: 'full', host: '127.0.0.1', port: 0 } });
  t.teardown(() => node.stop());
  const s = sessionOn(t, `127.0.0.1:${node.clusterPort}`, { timeoutMs: 2000 });
  await ok(t, s, 'stats');
  await node.stop();
  await fails(t, s, 'stats', /is unreachable/);
  await fails(t, s, 'ring', /is unreachable/);
});

test('a node without an inspector has no cluster port; inspector calls during stop are refused, not hung', async (t) => {
  const plain = await startNode({ dataDir: tempDir('troupe-inspect-'), shards: 1, actorModules: [COUNTER] });
  t.teardown(() => plain.stop());
  t.is(plain.clusterPort, undefined);
  await plain.stop();
  const node = await startNode({ dataDir: tempDir('troupe-inspect-'), shards: 1, actorModules: [COUNTER], inspector: { mode: 'full', host: '127.0.0.1', port: 0 } });
  t.teardown(() => node.stop());
  const s = sessionOn(t, `127.0.0.1:${node.clusterPort}`, { timeoutMs: 2000 });
  const [stats] = await Promise.all([s.run('stats'), node.stop()]);
  t.truthy(stats);
  if (!stats!.ok) t.regex(stats!.error!, /unreachable|starting or stopping/);
});
