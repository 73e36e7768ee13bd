// Bearer tokens of the carts gateway: good tokens pass; forged, expired, malformed, oversized,
// hostile ones and those of another issuer or audience are refused with an AuthError (never
// another exception).

import test from 'ava';
import fc from 'fast-check';
import { createHmac } from 'node:crypto';
import { AuthError, bearerOf, signToken, TOKEN_AUDIENCE, TOKEN_ISSUER, verifyToken } from '../../../gateways/carts/auth.js';

const SECRET = 's3cret-for-tests-0123456789abcdef';
const USER = '3f2a0c1e-7b4d-4e8a-9c61-2d5f0a9b8c7e';
const NOW = 1_800_000_000_000;

/** A token signed with the secret; `iss` and `aud` are the right ones unless the payload says otherwise. */
function forge(header: object, payload: object, secret = SECRET): string {
  if (!Array.isArray(payload)) payload = { iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, ...payload };
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

test('a signed token names its user and roles', (t) => {
  t.deepEqual(verifyToken(SECRET, signToken(SECRET, USER, { nowMs: NOW }), NOW), { user: USER, admin: false });
  t.deepEqual(verifyToken(SECRET, signToken(SECRET, USER.toUpperCase(), { roles: ['admin'], nowMs: NOW }), NOW), { user: USER, admin: true });
});

test('refuses expired, not-yet-valid, forged and tampered tokens', (t) => {
  const token = signToken(SECRET, USER, { ttlSeconds: 60, nowMs: NOW });
  t.throws(() => verifyToken(SECRET, token, NOW + 61_000), { instanceOf: AuthError, message: /expired/ });
  t.throws(() => verifyToken('other', token, NOW), { instanceOf: AuthError, message: /signature/ });
  const [h, , s] = token.split('.');
  const admin = Buffer.from(JSON.stringify({ sub: USER, roles: ['admin'], exp: NOW / 1000 + 60 })).toString('base64url');
  t.throws(() => verifyToken(SECRET, `${h}.${admin}.${s}`, NOW), { instanceOf: AuthError, message: /signature/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: USER, exp: NOW / 1000 + 60, nbf: NOW / 1000 + 30 }), NOW), { message: /not valid yet/ });
});

test('refuses alg none and other algorithms, missing exp, bad subjects', (t) => {
  const exp = NOW / 1000 + 60;
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: USER, exp })).toString('base64url')}.x`;
  t.throws(() => verifyToken(SECRET, none, NOW), { instanceOf: AuthError, message: /algorithm/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'RS256' }, { sub: USER, exp }), NOW), { message: /algorithm/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: USER }), NOW), { message: /expiry/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: 'admin', exp }), NOW), { message: /subject/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: 42, exp }), NOW), { message: /subject/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, [USER] as unknown as object), NOW), { message: /not a JSON object/ });
});

test('a signed token carries iss and aud; a wrong or missing issuer or audience is refused', (t) => {
  const claims = JSON.parse(Buffer.from(signToken(SECRET, USER, { nowMs: NOW }).split('.')[1]!, 'base64url').toString('utf8'));
  t.is(claims.iss, 'troupe-carts');
  t.is(claims.aud, 'troupe-carts');
  const exp = NOW / 1000 + 60;
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: USER, exp, iss: 'someone-else' }), NOW), { instanceOf: AuthError, message: /issuer \(iss\) is "someone-else"; carts tokens have iss "troupe-carts"/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: USER, exp, iss: undefined }), NOW), { instanceOf: AuthError, message: /issuer \(iss\) is missing/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: USER, exp, aud: 'billing' }), NOW), { instanceOf: AuthError, message: /audience \(aud\) is "billing"/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: USER, exp, aud: undefined }), NOW), { instanceOf: AuthError, message: /audience \(aud\) is missing/ });
  t.throws(() => verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: USER, exp, aud: ['billing'] }), NOW), { instanceOf: AuthError, message: /audience/ });
  // An audience list that names the carts is a token for the carts (RFC 7519, 4.1.3).
  t.deepEqual(verifyToken(SECRET, forge({ alg: 'HS256' }, { sub: USER, exp, aud: ['billing', TOKEN_AUDIENCE] }), NOW), { user: USER, admin: false });
  // A token of the old form (no iss, no aud), signed with the right secret: refused, saying why.
  const old = `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: USER, exp })).toString('base64url')}`;
  const oldToken = `${old}.${createHmac('sha256', SECRET).update(old).digest('base64url')}`;
  t.throws(() => verifyToken(SECRET, oldToken, NOW), { message: /iss.*missing.*ask for a new token/ });
});

test('refuses malformed and oversized tokens', (t) => {
  for (const bad of ['', 'a', 'a.b', 'a.b.c.d', 'a..c', 'a.b.c!', '....', 'é.é.é']) {
    t.throws(() => verifyToken(SECRET, bad, NOW), { instanceOf: AuthError }, JSON.stringify(bad));
  }
  t.throws(() => verifyToken(SECRET, 'a'.repeat(5000), NOW), { message: /over the limit/ });
  t.throws(() => verifyToken(SECRET, 'bm90IGpzb24.bm90IGpzb24.AAAA', NOW), { message: /algorithm|JSON/ });
});

test('bearer metadata: exactly one `Bearer <token>`', (t) => {
  t.is(bearerOf(['Bearer abc.def.ghi']), 'abc.def.ghi');
  t.is(bearerOf(['bearer   abc']), 'abc');
  t.throws(() => bearerOf([]), { message: /no authorization/ });
  t.throws(() => bearerOf(['Bearer a', 'Bearer b']), { message: /more than one/ });
  t.throws(() => bearerOf(['Basic dXNlcjpwYXNz']), { instanceOf: AuthError });
  t.throws(() => bearerOf(['Bearer a b']), { instanceOf: AuthError });
});

test('property: any string is either a valid token or an AuthError, never a crash', (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.array(fc.base64String({ maxLength: 80 }), { minLength: 1, maxLength: 4 }).map((p) => p.join('.'))), (s) => {
      try {
        verifyToken(SECRET, s, NOW);
        return false; // a random string is never a valid signed token
      } catch (err) {
        return err instanceof AuthError;
      }
    }),
    { numRuns: 2000 },
  );
  t.pass();
});
