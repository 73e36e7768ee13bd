// Secrets the gateways read from files (the carts token secret, the events summary token): at
// least 32 bytes, checked at start, and a warning when other users of the machine can read them.

import { readFileSync, statSync } from 'node:fs';
import { ConfigError } from '../runtime/errors.js';

/** The fewest bytes a secret may have: 256 bits, the size of the HMAC-SHA256 key it becomes. */
export const MIN_SECRET_BYTES = 32;

/** How a person makes a good secret file; every refusal says it. */
export function howToMakeSecret(file: string): string {
  return `make one with \`head -c 48 /dev/urandom | base64 > ${file} && chmod 600 ${file}\``;
}

/** Why `secret` (from `source`) is too short to use, or undefined when it is long enough. */
export function secretLengthProblem(setting: string, source: string, secret: string, file = 'FILE'): string | undefined {
  const bytes = Buffer.byteLength(secret, 'utf8');
  if (bytes >= MIN_SECRET_BYTES) return undefined;
  return `setting ${setting}: ${source} holds ${bytes} bytes; a secret needs at least ${MIN_SECRET_BYTES}: ${howToMakeSecret(file)}`;
}

export interface SecretFile {
  secret: string;
  /** Set when the file can be read by its group or by others: say so at start. */
  warning?: string;
}

/**
 * Reads the secret in `file` (the value of setting `setting`): the whole file less one trailing
 * newline. Throws a ConfigError when it cannot be read or is shorter than MIN_SECRET_BYTES.
 */
export function readSecretFile(setting: string, file: string): SecretFile {
  let text: string;
  let mode: number;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read by this user' : (err as Error).message;
    throw new ConfigError(`setting ${setting}: the file ${file} ${why}; give a file holding the secret (${howToMakeSecret(file)})`);
  }
  const secret = text.replace(/\r?\n$/, '');
  const problem = secretLengthProblem(setting, `the file ${file}`, secret, file);
  if (problem) throw new ConfigError(problem);
  const warning =
    (mode & 0o077) !== 0
      ? `the secret file ${file} (--${setting}) can be read by other users of this machine (mode ${(mode & 0o777).toString(8)}); run \`chmod 600 ${file}\``
      : undefined;
  return { secret, ...(warning ? { warning } : {}) };
}
