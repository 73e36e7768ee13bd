// Errors as gRPC statuses: each kind of failure a cart call can meet, including runtime errors
// rebuilt on the asking side after crossing a thread or a node, gets its status and a message.

import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { toStatus } from '../../../gateways/carts/status.js';
import { RpcError } from '../../../gateways/carts/wire.js';
import { AuthError } from '../../../gateways/carts/auth.js';
import { CartError } from '../../../actors/cart-operations.js';
import { CartBusy } from '../../../actors/cart-client.js';
import { CartConflict } from '../../../actors/catalogue.js';
import { AskTimeout, ChangelogUnavailable, NotRunning, Overloaded, PartitionMoved, PartitionUnavailable, PeerGone, PeerUnreachable, fromWireError, toWireError } from '../../../runtime/errors.js';

/** What the asking side holds once an error has crossed a thread or a node. */
const crossed = (err: Error): Error => fromWireError(toWireError(err), 'cart/c1', 'run');

test('errors of the gateway, the token and the cart keep their own status', (t) => {
  t.deepEqual(toStatus(new RpcError(grpc.status.INVALID_ARGUMENT, 'cart_uuid is not a UUID')), {
    code: grpc.status.INVALID_ARGUMENT,
    details: 'cart_uuid is not a UUID',
  });
  t.is(toStatus(new AuthError('no bearer token')).code, grpc.status.UNAUTHENTICATED);
  t.is(toStatus(new CartError('NOT_FOUND', 'no cart c1')).code, grpc.status.NOT_FOUND);
  t.is(toStatus(new CartError('PERMISSION_DENIED', 'not yours')).code, grpc.status.PERMISSION_DENIED);
  t.is(toStatus(new CartError('FAILED_PRECONDITION', 'item deleted')).code, grpc.status.FAILED_PRECONDITION);
  t.is(toStatus(new CartBusy('c1', 512)).code, grpc.status.RESOURCE_EXHAUSTED);
});

test('runtime errors, after crossing to the asking side, are retryable statuses that say what happened', (t) => {
  const overloaded = toStatus(crossed(new Overloaded('the mailbox of shard 0')));
  t.is(overloaded.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(overloaded.details, /shard 0 is full/);

  t.is(toStatus(new AskTimeout('cart/c1', 'run', 5000)).code, grpc.status.DEADLINE_EXCEEDED);

  const stopping = toStatus(crossed(new NotRunning('node n1')));
  t.is(stopping.code, grpc.status.UNAVAILABLE);
  t.regex(stopping.details, /retry on another node/);

  // The owner of the cart died mid-call: the change may or may not be stored, and the caller is
  // told so, with what to do, rather than getting INTERNAL.
  const gone = toStatus(crossed(new PeerGone('n2')));
  t.is(gone.code, grpc.status.UNAVAILABLE);
  t.regex(gone.details, /node n2 left the cluster before answering/);
  t.regex(gone.details, /may or may not/);
  t.regex(gone.details, /Get it/);

  // The cart's partition served by nobody for a moment (a lease lapsed, a cut node): retry, not INTERNAL.
  for (const err of [new PartitionUnavailable('cart/c1', 7, 'n1', 'cannot take its lease: Redis does not answer'), new PartitionMoved('cart/c1', 7), new PeerUnreachable('n2'), new ChangelogUnavailable('cart/c1', 'timed out')]) {
    const s = toStatus(crossed(err));
    t.is(s.code, grpc.status.UNAVAILABLE, err.message);
    t.regex(s.details, /retry/, err.message);
  }

  // A cart saved by another activation every time this one tried: nothing was written, retry.
  const conflict = toStatus(crossed(new CartConflict('c1', 4)));
  t.is(conflict.code, grpc.status.ABORTED);
  t.regex(conflict.details, /cart c1 was saved elsewhere/);
  t.regex(conflict.details, /retry/);
});

test('a store that cannot be reached is UNAVAILABLE; anything unforeseen is INTERNAL with its message', (t) => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  t.is(toStatus(refused).code, grpc.status.UNAVAILABLE);
  const shutdown = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
  t.regex(toStatus(shutdown).details, /cart store is unavailable/);
  const odd = toStatus(new TypeError('x is not a function'));
  t.is(odd.code, grpc.status.INTERNAL);
  t.regex(odd.details, /x is not a function/);
  t.is(toStatus('a thrown string').code, grpc.status.INTERNAL);
});
