// TLS on a public gateway port (presence, carts, events), optional per service: a certificate and
// its key from two settings, both or neither, read and checked at start with messages a person
// can act on (a missing file, not PEM, a key of another certificate, an expired certificate).

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../runtime/errors.js';
import type { SettingSpec, SettingValues } from '../runtime/settings.js';

export interface PublicTls {
  /** PEM: the server certificate, then any intermediates. */
  cert: Buffer;
  /** PEM: its private key. */
  key: Buffer;
  /** When the certificate stops being valid. */
  validTo: Date;
  /** Set when the certificate is not valid yet or expires within a week: say so at start. */
  warning?: string;
}

/** The two settings `--<service>-tls-cert` and `--<service>-tls-key` of one service. */
export function publicTlsSettings(service: string, what: string): SettingSpec[] {
  return [
    {
      name: `${service}-tls-cert`,
      kind: 'string',
      default: undefined,
      description: `PEM certificate (chain) of ${what}; with --${service}-tls-key it serves TLS, without both plaintext`,
    },
    { name: `${service}-tls-key`, kind: 'string', default: undefined, description: `PEM private key of --${service}-tls-cert (keep it 0600)` },
  ];
}

const WEEK_MS = 7 * 24 * 3_600_000;

function readPem(setting: string, file: string, marker: RegExp, what: string, problems: string[]): Buffer | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read by this user' : (err as Error).message;
    problems.push(`setting ${setting}: the file ${file} ${why}; give the path of a PEM ${what}`);
    return undefined;
  }
  if (!marker.test(bytes.toString('latin1'))) {
    problems.push(`setting ${setting}: the file ${file} holds no PEM ${what} (no "-----BEGIN ..." block); give a PEM file, not DER or another format`);
    return undefined;
  }
  return bytes;
}

/**
 * The TLS files of `service` from the settings, or undefined when neither is set (plaintext).
 * Throws one ConfigError naming every problem.
 */
export function publicTlsFrom(values: SettingValues, service: string, nowMs: number = Date.now()): PublicTls | undefined {
  const certSetting = `${service}-tls-cert`;
  const keySetting = `${service}-tls-key`;
  const certFile = typeof values[certSetting] === 'string' && values[certSetting] !== '' ? (values[certSetting] as string) : undefined;
  const keyFile = typeof values[keySetting] === 'string' && values[keySetting] !== '' ? (values[keySetting] as string) : undefined;
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) {
    const [given, missing] = certFile === undefined ? [keySetting, certSetting] : [certSetting, keySetting];
    throw new ConfigError(`setting ${missing}: --${given} is set but --${missing} is not; TLS on the ${service} port needs both the certificate and its key (or neither, for plaintext)`);
  }
  const problems: string[] = [];
  const cert = readPem(certSetting, certFile, /-----BEGIN CERTIFICATE-----/, 'certificate', problems);
  const key = readPem(keySetting, keyFile, /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/, 'private key', problems);
  if (!cert || !key) throw new ConfigError(problems.join('\n'));
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(`setting ${certSetting}: the certificate in ${certFile} cannot be read: ${(err as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new ConfigError(`setting ${keySetting}: the key in ${keyFile} cannot be read (${(err as Error).message}); give an unencrypted PEM private key`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new ConfigError(`settings ${certSetting} and ${keySetting}: the key in ${keyFile} is not the key of the certificate in ${certFile}; give the key the certificate was issued for`);
  }
  const validTo = new Date(x509.validTo);
  const validFrom = new Date(x509.validFrom);
  if (validTo.getTime() <= nowMs) {
    throw new ConfigError(`setting ${certSetting}: the certificate in ${certFile} (${x509.subject.replace(/\n/g, ', ')}) expired at ${validTo.toISOString()}; renew it`);
  }
  let warning: string | undefined;
  if (validFrom.getTime() > nowMs) warning = `the ${service} TLS certificate ${certFile} is not valid before ${validFrom.toISOString()}; clients refuse it until then (check this machine's clock)`;
  else if (validTo.getTime() - nowMs < WEEK_MS) warning = `the ${service} TLS certificate ${certFile} expires at ${validTo.toISOString()}; renew it`;
  return { cert, key, validTo, ...(warning ? { warning } : {}) };
}
