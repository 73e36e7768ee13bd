// A chaos node that ends while it starts (Redis restarted or cut off at that moment): its start
// fails at once, saying the process ended, and is not mistaken for a crash of a running node; the
// run starts it again, as a supervisor would. Before, the run's crash handler started a second
// process while the fault's own start kept waiting on the first, dead one for its 60 s timeout,
// and the node counted as held by the fault all that while (seed 31337, kill and redis-restart at
// once: 445 partitions "stuck" for 57 s that the second process was in fact serving).

import test, { type ExecutionContext } from 'ava';
import { join } from 'node:path';
import { NodeProcess, NodeStartFailed, startAgain } from '../../ops/chaos/node-process.js';
import { tempDir } from '../common.js';

const FLAKY = new URL('./fixtures/flaky-node.js', import.meta.url).pathname;

function flakyNode(t: ExecutionContext, fails: number): NodeProcess {
  const dir = tempDir('troupe-chaos-node-');
  process.env.FLAKY_COUNT = join(dir, 'tries');
  process.env.FLAKY_FAILS = String(fails);
  const node = new NodeProcess({ name: 'n1', dataDir: dir, logFile: join(dir, 'n1.log'), troupeBin: FLAKY, args: [], ports: ['ops'], address: '127.0.0.1' });
  t.teardown(async () => {
    await node.kill();
    await node.closeLog();
  });
  return node;
}

test.serial('a process that ends during its start fails that start, and is not reported as an exit nobody asked for', async (t) => {
  const node = flakyNode(t, 1);
  const unexpected: string[] = [];
  // What the run did on an unexpected exit: start the node again.
  node.onUnexpectedExit = (n, how) => {
    unexpected.push(how);
    void n.start(20_000).catch(() => {});
  };
  const err = await t.throwsAsync(node.start(20_000), { instanceOf: NodeStartFailed });
  t.true(err!.ended, 'the process gave up by itself');
  t.regex(err!.why, /the process ended \(exit code 1\)/);
  t.deepEqual(unexpected, []);
  t.is(node.unexpectedExits, 0);
  t.is(node.state, 'down');
});

test.serial('startAgain starts it again until it is up, and says each try', async (t) => {
  const node = flakyNode(t, 2);
  const said: string[] = [];
  t.true(await startAgain(node, async (line) => void said.push(line), 20_000, 50));
  t.is(node.state, 'up');
  t.true(node.alive);
  t.is(said.length, 2);
  t.regex(said[0]!, /n1 ended while starting \(the process ended \(exit code 1\), try 1 of 5\)/);
  t.regex(said[1]!, /try 2 of 5/);
});

test.serial('startAgain gives up after its tries, says so, and never throws', async (t) => {
  const node = flakyNode(t, 99);
  const said: string[] = [];
  t.false(await startAgain(node, async (line) => void said.push(line), 20_000, 20));
  t.is(said.length, 5);
  t.regex(said.at(-1)!, /n1 did not start again \(5 tries\): n1 did not start: the process ended \(exit code 1\)/);
  t.is(node.unexpectedExits, 0);
});
