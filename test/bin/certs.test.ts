// `troupe certs`: the CA and the certificates it issues, checked with node:crypto alone (no
// openssl): file names and modes, CN and subjectAltNames, usages, the chain to the CA, and the
// refusals (overwrite, bad names, a missing CA).

import test from 'ava';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkTlsFiles } from '../../runtime/cluster/cluster-tls.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;

function troupe(...args: string[]) {
  return spawnSync(process.execPath, [TROUPE, 'certs', ...args], { encoding: 'utf8' });
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (path: string): number => statSync(path).mode & 0o777;

test('create-ca writes ca.pem and ca-key.pem (0600), a self-signed CA; it refuses to overwrite unless --force', (t) => {
  const dir = tempDir(t);
  const r = troupe('create-ca', '--out', join(dir, 'ca'));
  t.is(r.status, 0, r.stderr);
  const ca = new X509Certificate(readFileSync(join(dir, 'ca', 'ca.pem')));
  t.true(ca.ca);
  t.true(ca.checkIssued(ca));
  t.true(ca.verify(ca.publicKey));
  t.true(ca.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'ca', 'ca-key.pem')))));
  t.is(mode(join(dir, 'ca', 'ca-key.pem')), 0o600);
  t.is(mode(join(dir, 'ca')), 0o700);

  const again = troupe('create-ca', '--out', join(dir, 'ca'));
  t.is(again.status, 2);
  t.regex(again.stderr, /already exist.*--force/);
  t.true(ca.checkIssued(new X509Certificate(readFileSync(join(dir, 'ca', 'ca.pem')))), 'the CA is untouched');
  t.is(troupe('create-ca', '--out', join(dir, 'ca'), '--force').status, 0);
  t.false(new X509Certificate(readFileSync(join(dir, 'ca', 'ca.pem'))).serialNumber === ca.serialNumber, 'a new CA with --force');
  t.is(mode(join(dir, 'ca', 'ca-key.pem')), 0o600);
});

test('issue writes NAME.pem and NAME-key.pem (0600): CN=NAME, SAN DNS:NAME plus --dns and --ip, server and client usage, issued by the CA', (t) => {
  const dir = tempDir(t);
  t.is(troupe('create-ca', '--out', join(dir, 'ca')).status, 0);
  const r = troupe('issue', '--ca', join(dir, 'ca'), '--name', 'node-1', '--dns', 'node-1.troupe.svc', '--dns', 'a.example,b.example', '--ip', '127.0.0.1', '--ip', '::1', '--days', '30', '--out', join(dir, 'nodes'));
  t.is(r.status, 0, r.stderr);
  const cert = new X509Certificate(readFileSync(join(dir, 'nodes', 'node-1.pem')));
  const ca = new X509Certificate(readFileSync(join(dir, 'ca', 'ca.pem')));
  t.is(cert.subject, 'CN=node-1');
  const san = cert.subjectAltName!.split(', ');
  for (const name of ['DNS:node-1', 'DNS:node-1.troupe.svc', 'DNS:a.example', 'DNS:b.example', 'IP Address:127.0.0.1']) t.true(san.includes(name), `${name} in ${cert.subjectAltName}`);
  t.true(san.some((s) => /^IP Address:0:0:0:0:0:0:0:1$|^IP Address:::1$/i.test(s)), cert.subjectAltName);
  t.deepEqual(cert.keyUsage.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  t.false(cert.ca);
  t.true(cert.checkIssued(ca));
  t.true(cert.verify(ca.publicKey));
  const key = createPrivateKey(readFileSync(join(dir, 'nodes', 'node-1-key.pem')));
  t.true(cert.checkPrivateKey(key));
  t.is(key.asymmetricKeyType, 'ec');
  t.is(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.is(mode(join(dir, 'nodes', 'node-1-key.pem')), 0o600);
  const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
  t.true(days > 29 && days <= 30.01, `valid for ${days} days`);
  // The node's own check of its files agrees.
  t.deepEqual(checkTlsFiles({ ca: join(dir, 'ca', 'ca.pem'), cert: join(dir, 'nodes', 'node-1.pem'), key: join(dir, 'nodes', 'node-1-key.pem'), expectName: 'node-1' }).problems, []);
  // Two issues give two serial numbers.
  t.is(troupe('issue', '--ca', join(dir, 'ca'), '--name', 'node-2', '--out', join(dir, 'nodes')).status, 0);
  t.not(new X509Certificate(readFileSync(join(dir, 'nodes', 'node-2.pem'))).serialNumber, cert.serialNumber);
});

test('issue refuses what it cannot make, saying what to give', (t) => {
  const dir = tempDir(t);
  t.is(troupe('create-ca', '--out', join(dir, 'ca')).status, 0);
  const noCa = troupe('issue', '--ca', join(dir, 'nowhere'), '--name', 'n', '--out', dir);
  t.is(noCa.status, 2);
  t.regex(noCa.stderr, /cannot read .*ca\.pem.*create-ca/);
  const badName = troupe('issue', '--ca', join(dir, 'ca'), '--name', 'two words', '--out', dir);
  t.is(badName.status, 2);
  t.regex(badName.stderr, /setting name: got "two words"/);
  const badIp = troupe('issue', '--ca', join(dir, 'ca'), '--name', 'n', '--ip', '300.1.1.1', '--out', dir);
  t.is(badIp.status, 2);
  t.regex(badIp.stderr, /setting ip: got "300\.1\.1\.1"/);
  const missing = troupe('issue', '--out', dir);
  t.is(missing.status, 2);
  t.regex(missing.stderr, /setting ca: missing/);
  t.regex(missing.stderr, /setting name: missing/);
  t.is(troupe('frobnicate', '--out', dir).status, 2);
  t.is(troupe('issue', '--ca', join(dir, 'ca'), '--name', 'n', '--out', dir).status, 0);
  const again = troupe('issue', '--ca', join(dir, 'ca'), '--name', 'n', '--out', dir);
  t.is(again.status, 2);
  t.regex(again.stderr, /n\.pem and .*n-key\.pem already exist/);
});
