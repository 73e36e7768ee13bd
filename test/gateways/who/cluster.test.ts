// WHO across several servers, through the Membership interface only: three WHO gateways share an
// in-test membership (a stand-in for the Redis-backed one of the cluster issue) and must agree.

import test from 'ava';
import type { Membership } from '../../../runtime/index.js';
import { RawClient, eventually, startWho } from './helpers.js';

/** What the cluster's membership provides, in memory: per-node gauges, and a set of live nodes. */
class SharedBoard {
  readonly gauges = new Map<string, Map<string, number>>();
  readonly alive = new Set<string>();

  join(self: string): Membership {
    this.alive.add(self);
    const board = this;
    return {
      self,
      members: () => [...board.alive],
      setGauge(name, value) {
        let mine = board.gauges.get(self);
        if (!mine) board.gauges.set(self, (mine = new Map()));
        mine.set(name, value);
      },
      async sumGauge(name) {
        let sum = 0;
        for (const id of board.alive) sum += board.gauges.get(id)?.get(name) ?? 0;
        return sum;
      },
      onChange: () => () => {},
    };
  }

  /** Failure detection declared the node dead: its gauges stop counting. */
  declareDead(id: string): void {
    this.alive.delete(id);
  }
}

test('clients spread over three servers: every server answers the same WHO, and its own WHERE', async (t) => {
  const board = new SharedBoard();
  const nodes = await Promise.all(['a', 'b', 'c'].map((n) => startWho(t, {}, { nodeId: `who-test-${process.pid}-${n}`, membership: board.join(`who-test-${process.pid}-${n}`) })));
  const clients: Array<{ node: number; client: RawClient }> = [];
  for (const [i, node] of nodes.entries()) {
    for (let k = 0; k <= i; k++) clients.push({ node: i, client: await RawClient.connect(node.port) });
  }
  const firstOf = (i: number) => clients.find((c) => c.node === i)!.client;
  await eventually(async () => {
    const answers = await Promise.all([0, 1, 2].map((i) => firstOf(i).ask('WHO')));
    return answers.every((a) => a === '6');
  }, 3000, 'WHO = 6 on every node');
  const wheres = await Promise.all([0, 1, 2].map((i) => firstOf(i).ask('WHERE')));
  t.deepEqual(wheres, nodes.map((n) => n.nodeId));
  t.is(new Set(wheres).size, 3);

  // Node b dies (its clients stay connected to a dead process): once detected, WHO drops them.
  board.declareDead(nodes[1]!.nodeId);
  t.deepEqual(await Promise.all([0, 2].map((i) => firstOf(i).ask('WHO'))), ['4', '4']);

  // A disconnect on c shows on a.
  await clients.filter((c) => c.node === 2)[1]!.client.close();
  await eventually(async () => (await firstOf(0).ask('WHO')) === '3', 3000, 'WHO = 3 on a');

  await Promise.all(clients.map((c) => c.client.close()));
  await Promise.all(nodes.map((n) => n.gateway.stop()));
});
