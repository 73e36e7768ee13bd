// The match-pair actor on a real node: the rule over a pair's likes fed in order, across asks,
// and a fresh start for a new round.

import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import MatchPair, { applyPairEvents, encodePairEvent, FROM_LO, LIKED, SELF } from '../../actors/match-pair.js';
import { startNode, type TroupeNode } from '../../runtime/index.js';

let node: TroupeNode;
let dataDir: string;

test.before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'troupe-match-pair-'));
  node = await startNode({ dataDir, actorModules: [new URL('../../actors/match-pair.js', import.meta.url).href], shards: 1 });
});

test.after.always(async () => {
  await node?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const loLikes = (seq: number) => encodePairEvent(seq, LIKED | FROM_LO);
const hiLikes = (seq: number) => encodePairEvent(seq, LIKED);

test('a like answering an earlier opposite like is a match, across messages', async (t) => {
  const pair = node.ref(MatchPair, '100-200');
  t.deepEqual(await pair.ask('likes', { round: 1, events: [loLikes(2)] }), []);
  t.deepEqual(await pair.ask('likes', { round: 1, events: [hiLikes(4), hiLikes(9)] }), [4, 9]);
  t.deepEqual(await pair.ask('likes', { round: 1, events: [loLikes(12)] }), [12]);
});

test('a new round starts the pair afresh', async (t) => {
  const pair = node.ref(MatchPair, '1-2');
  t.deepEqual(await pair.ask('likes', { round: 1, events: [loLikes(1)] }), []);
  t.deepEqual(await pair.ask('likes', { round: 2, events: [hiLikes(2)] }), []);
  t.deepEqual(await pair.ask('likes', { round: 2, events: [loLikes(3)] }), [3]);
});

test('the rule without a node: same direction twice is no match; a self-like answers itself', (t) => {
  const out: number[] = [];
  applyPairEvents(0, [loLikes(1), loLikes(2)], out);
  t.deepEqual(out, []);
  const self: number[] = [];
  applyPairEvents(0, [encodePairEvent(5, LIKED | FROM_LO | SELF), encodePairEvent(8, LIKED | FROM_LO | SELF)], self);
  t.deepEqual(self, [8]);
  const big: number[] = [];
  applyPairEvents(0, [loLikes(2 ** 40), hiLikes(2 ** 40 + 1)], big);
  t.deepEqual(big, [2 ** 40 + 1], 'large sequence numbers survive the encoding');
});
