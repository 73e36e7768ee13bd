// URLs printed in messages: the password hidden, everything else kept, non-URLs not echoed.

import test from 'ava';
import { redactedUrl } from '../../runtime/index.js';

test('the password is hidden; user, host, port, path and query are kept', (t) => {
  t.is(redactedUrl('postgres://app:s3cret@db.internal:5432/carts?sslmode=require'), 'postgres://app:***@db.internal:5432/carts?sslmode=require');
  t.is(redactedUrl('redis://:s3cret@127.0.0.1:6379/2'), 'redis://:***@127.0.0.1:6379/2');
});

test('a URL without a password is printed as it is', (t) => {
  t.is(redactedUrl('redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379');
  t.is(redactedUrl('postgres://postgres@127.0.0.1:5432/test'), 'postgres://postgres@127.0.0.1:5432/test');
});

test('a string that is not a URL is not echoed, in case it holds a password', (t) => {
  t.is(redactedUrl('s3cret@db.internal:5432'), '(a URL that does not parse)');
  t.is(redactedUrl('//app:s3cret@db.internal'), '(a URL that does not parse)');
  t.is(redactedUrl(''), '(a URL that does not parse)');
});
