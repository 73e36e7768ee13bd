// A self-signed certificate for localhost/127.0.0.1, made with the machine's `openssl` (node:crypto
// cannot make certificates): the public gateways' TLS tests trust it. Undefined without openssl.

import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificate {
  dir: string;
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

export const NO_OPENSSL = 'the `openssl` command is not on this machine; the TLS handshake tests need it to make a self-signed certificate (apt-get install openssl)';

/** Makes a certificate in a fresh directory removed at the test's end; `days` may be negative-free only. */
export function selfSigned(t: ExecutionContext, options: { cn?: string; days?: number } = {}): TestCertificate | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const r = spawnSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', String(options.days ?? 2),
      '-subj', `/CN=${options.cn ?? 'localhost'}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { encoding: 'utf8' },
  );
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  if (r.status !== 0) throw new Error(`openssl req failed (exit ${r.status}): ${r.stderr}`);
  return { dir, certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}
