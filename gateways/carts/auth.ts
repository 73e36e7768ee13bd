// Bearer tokens for the carts gateway: compact JWS (JWT) signed with HMAC-SHA256 under the
// `carts-secret` setting. The token names the user (`sub`, a uuid) and its roles (`roles`).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TokenClaims {
  /** The user's uuid: carts belong to it. */
  sub: string;
  /** `admin` may create, update and delete items (and read any cart). */
  roles: string[];
  /** Expiry, seconds since the epoch. */
  exp: number;
  iat: number;
}

export interface Principal {
  user: string;
  admin: boolean;
}

/** Why a token was refused, worded for the person holding it. */
export class AuthError extends Error {
  override readonly name = 'AuthError';
}

const MAX_TOKEN_LENGTH = 4096;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function mac(secret: string, signingInput: string): Buffer {
  return createHmac('sha256', secret).update(signingInput).digest();
}

/** Signs a token for `user` valid `ttlSeconds` from `nowMs`. */
export function signToken(secret: string, user: string, options: { roles?: string[]; ttlSeconds?: number; nowMs?: number } = {}): string {
  if (!UUID.test(user)) throw new AuthError(`user "${user}" is not a uuid; tokens name users by uuid`);
  const iat = Math.floor((options.nowMs ?? Date.now()) / 1000);
  const claims: TokenClaims = { sub: user.toLowerCase(), roles: options.roles ?? [], iat, exp: iat + (options.ttlSeconds ?? 3600) };
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(mac(secret, input))}`;
}

function parsePart(part: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw new AuthError(`bearer token ${what} is not base64url JSON; present a token made by \`troupe carts-token\``);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AuthError(`bearer token ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Checks a token's form, signature and expiry; returns who it names. */
export function verifyToken(secret: string, token: string, nowMs: number = Date.now()): Principal {
  if (token.length > MAX_TOKEN_LENGTH) throw new AuthError(`bearer token is ${token.length} characters, over the limit of ${MAX_TOKEN_LENGTH}`);
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => BASE64URL.test(p))) {
    throw new AuthError('bearer token is not a JWT (three base64url parts separated by dots)');
  }
  const header = parsePart(parts[0]!, 'header');
  if (header['alg'] !== 'HS256') throw new AuthError(`bearer token algorithm "${String(header['alg'])}" is not accepted; tokens are HS256`);
  const expected = mac(secret, `${parts[0]}.${parts[1]}`);
  const given = Buffer.from(parts[2]!, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new AuthError('bearer token signature does not match; it was signed with another secret (check --carts-secret)');
  }
  const claims = parsePart(parts[1]!, 'payload');
  const sub = claims['sub'];
  if (typeof sub !== 'string' || !UUID.test(sub)) throw new AuthError('bearer token subject (sub) is not a user uuid');
  const exp = claims['exp'];
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new AuthError('bearer token has no expiry (exp); ask for a new token');
  if (exp * 1000 <= nowMs) throw new AuthError(`bearer token expired at ${new Date(exp * 1000).toISOString()}; ask for a new token`);
  const nbf = claims['nbf'];
  if (typeof nbf === 'number' && nbf * 1000 > nowMs) throw new AuthError('bearer token is not valid yet (nbf)');
  const roles = Array.isArray(claims['roles']) ? claims['roles'].filter((r): r is string => typeof r === 'string') : [];
  return { user: sub.toLowerCase(), admin: roles.includes('admin') };
}

/** The token of an `authorization: Bearer <token>` metadata value. */
export function bearerOf(values: readonly (string | Buffer)[]): string {
  if (values.length === 0) {
    throw new AuthError('no authorization metadata; send `authorization: Bearer <token>` (a development token is printed at node start)');
  }
  if (values.length > 1) throw new AuthError('more than one authorization metadata value; send exactly one');
  const value = String(values[0]);
  const m = /^Bearer[ ]+(\S+)$/i.exec(value.trim());
  if (!m) throw new AuthError('authorization metadata is not `Bearer <token>`');
  return m[1]!;
}

export const DEV_SECRET_FILE = 'carts-dev-secret';

/**
 * The secret to sign with: the `carts-secret` setting, else a development secret kept in the
 * data dir (so tokens printed at start survive a restart of the same node, and only of it).
 */
export function resolveSecret(configured: unknown, dataDir: string): { secret: string; development: boolean } {
  if (typeof configured === 'string' && configured !== '') return { secret: configured, development: false };
  const file = join(dataDir, DEV_SECRET_FILE);
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) return { secret: existing, development: true };
  } catch {
    // not made yet
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('hex');
  writeFileSync(file, secret + '\n', { mode: 0o600 });
  return { secret, development: true };
}
