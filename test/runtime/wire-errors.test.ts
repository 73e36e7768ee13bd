// Runtime errors crossing a thread or a node (toWireError, then fromWireError on the asking side):
// each keeps its code, its message and its name, so a client told "PartitionUnavailable" knows to
// retry; only what a handler threw becomes an ActorFailure, carrying the thrown error's name.

import test from 'ava';
import { ActorFailure, AskTimeout, ChangelogUnavailable, NotRunning, Overloaded, PartitionMoved, PartitionUnavailable, PeerGone, PeerUnreachable, fromWireError, toWireError } from '../../runtime/errors.js';

const crossed = (err: Error): Error => fromWireError(toWireError(err), 'counter/c1', 'add');

test('every runtime error keeps its name, code and message across the wire', (t) => {
  const kinds = [
    new Overloaded('the mailbox of shard 0'),
    new AskTimeout('counter/c1', 'add', 5000),
    new NotRunning('node n1'),
    new PeerGone('n2'),
    new PeerUnreachable('n2'),
    new ChangelogUnavailable('counter/c1', 'Command timed out'),
    new PartitionMoved('counter/c1', 7),
    new PartitionUnavailable('counter/c1', 7, 'n1', 'cannot take its lease: Redis does not answer'),
  ];
  for (const err of kinds) {
    const back = crossed(err) as Error & { code?: string };
    t.is(back.name, err.name, err.message);
    t.is(back.code, (err as Error & { code: string }).code);
    t.is(back.message, err.message);
    t.false(back instanceof ActorFailure, `${err.name} is not the actor's own failure`);
  }
});

test('what a handler threw arrives as an ActorFailure naming it', (t) => {
  const back = crossed(new RangeError('seq must be a whole number'));
  t.true(back instanceof ActorFailure);
  t.is((back as ActorFailure).causeName, 'RangeError');
  t.is((back as ActorFailure).actor, 'counter/c1');
  t.is(back.message, 'seq must be a whole number');
});
