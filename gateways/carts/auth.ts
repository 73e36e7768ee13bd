// Bearer tokens for the carts gateway: compact JWS (JWT) signed with HMAC-SHA256 under the carts
// secret. The token names the user (`sub`, a uuid), its roles (`roles`), who made it (`iss`) and
// for whom (`aud`); and where the secret comes from (a file, the flag, or a development one).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../runtime/errors.js';
import { makePrivateDir, makePrivateFile } from '../../runtime/private-files.js';
import type { SettingValues } from '../../runtime/settings.js';
import { howToMakeSecret, readSecretFile, secretLengthProblem } from '../secret-file.js';

/** `iss` of every carts token: tokens of another issuer signed with the same secret are refused. */
export const TOKEN_ISSUER = 'troupe-carts';
/** `aud` of every carts token: the service the token is for. */
export const TOKEN_AUDIENCE = 'troupe-carts';

export interface TokenClaims {
  /** The user's uuid: carts belong to it. */
  sub: string;
  /** `admin` may create, update and delete items (and read any cart). */
  roles: string[];
  /** Expiry, seconds since the epoch. */
  exp: number;
  iat: number;
  iss: string;
  aud: string;
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
  const claims: TokenClaims = { sub: user.toLowerCase(), roles: options.roles ?? [], iat, exp: iat + (options.ttlSeconds ?? 3600), iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE };
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
    throw new AuthError('bearer token signature does not match; it was signed with another secret (check --carts-secret-file)');
  }
  const claims = parsePart(parts[1]!, 'payload');
  // After the signature, so a caller without the secret learns nothing of what it would take.
  const iss = claims['iss'];
  if (iss !== TOKEN_ISSUER) {
    throw new AuthError(`bearer token issuer (iss) is ${iss === undefined ? 'missing' : JSON.stringify(String(iss).slice(0, 64))}; carts tokens have iss "${TOKEN_ISSUER}": ask for a new token (\`troupe carts-token\`)`);
  }
  const aud = claims['aud'];
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (!audiences.includes(TOKEN_AUDIENCE)) {
    throw new AuthError(`bearer token audience (aud) is ${aud === undefined ? 'missing' : JSON.stringify(aud).slice(0, 64)}; carts tokens have aud "${TOKEN_AUDIENCE}": ask for a new token (\`troupe carts-token\`)`);
  }
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

export interface CartsSecret {
  secret: string;
  /** A development secret of this node's data dir: tokens made with it work on this node only. */
  development: boolean;
  /** What to say at start (a readable secret file, a secret in a flag). */
  warnings: string[];
}

/** Whether the node is part of a cluster: it has a Redis (a URL or Sentinels). */
export function inCluster(settings: SettingValues): boolean {
  return (settings['redis'] !== undefined && settings['redis'] !== '') || (settings['redis-sentinels'] !== undefined && settings['redis-sentinels'] !== '');
}

/**
 * The secret to sign and check tokens with: `carts-secret-file`, else `carts-secret`; in a cluster
 * one of them is required (every node must check the tokens of every other). Alone, without
 * either, a development secret kept 0600 in the data dir (so tokens survive a restart of the same
 * node, and only of it). `argv`: the process's arguments, to tell a flag (seen in `ps`) from the
 * environment. Throws a ConfigError naming the fix.
 */
export function cartsSecretFrom(settings: SettingValues, dataDir: string, argv: readonly string[] = process.argv): CartsSecret {
  const file = typeof settings['carts-secret-file'] === 'string' && settings['carts-secret-file'] !== '' ? settings['carts-secret-file'] : undefined;
  const given = typeof settings['carts-secret'] === 'string' && settings['carts-secret'] !== '' ? settings['carts-secret'] : undefined;
  if (file !== undefined && given !== undefined) {
    throw new ConfigError('settings carts-secret-file and carts-secret: both are set; give only --carts-secret-file FILE');
  }
  if (file !== undefined) {
    const { secret, warning } = readSecretFile('carts-secret-file', file);
    return { secret, development: false, warnings: warning ? [warning] : [] };
  }
  if (given !== undefined) {
    const problem = secretLengthProblem('carts-secret', 'the value', given);
    if (problem) throw new ConfigError(`${problem}, then give it as --carts-secret-file FILE`);
    const asFlag = argv.some((a) => a === '--carts-secret' || a.startsWith('--carts-secret='));
    const warnings = asFlag ? ['the carts secret was given as the flag --carts-secret, which every user of this machine sees in `ps`; put it in a file (0600) and give --carts-secret-file FILE instead'] : [];
    return { secret: given, development: false, warnings };
  }
  if (inCluster(settings)) {
    throw new ConfigError(
      `setting carts-secret-file: this node is in a cluster (--redis or --redis-sentinels) and has no carts secret; every node must sign and check tokens with the same one: give each node --carts-secret-file FILE (at least 32 bytes; ${howToMakeSecret('FILE')})`,
    );
  }
  return { secret: developmentSecret(dataDir), development: true, warnings: [] };
}

/** The development secret of `dataDir`, made (0600) when missing or too short. */
export function developmentSecret(dataDir: string): string {
  const file = join(dataDir, DEV_SECRET_FILE);
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) {
      makePrivateFile(file);
      return existing;
    }
  } catch {
    // not made yet
  }
  makePrivateDir(dataDir);
  const secret = randomBytes(32).toString('hex');
  writeFileSync(makePrivateFile(file), secret + '\n');
  return secret;
}
