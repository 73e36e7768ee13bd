// `troupe certs`: makes a cluster's CA (create-ca) and the certificates it issues to nodes and
// operators (issue), as PEM files; private keys are written 0600 and never overwritten unasked.

import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, type SettingSpec, type SettingValues } from '../runtime/index.js';
import { checkCertificateName, createCertificateAuthority, issueCertificate } from '../runtime/certs.js';

export const certsSettings: SettingSpec[] = [
  { name: 'out', kind: 'string', default: undefined, description: 'directory to write the files in (created 0700 when missing)' },
  { name: 'ca', kind: 'string', default: undefined, description: 'issue: the directory create-ca wrote (ca.pem, ca-key.pem)' },
  { name: 'name', kind: 'string', default: undefined, description: "issue: the certificate's CN and first DNS name: the node's --node-name (or an operator's name for troupe inspect)" },
  { name: 'dns', kind: 'list', default: [], description: 'issue: more DNS names (repeat the flag, or a,b)' },
  { name: 'ip', kind: 'list', default: [], description: 'issue: IP addresses to name (repeat the flag, or a,b)' },
  { name: 'days', kind: 'int', min: 1, max: 36_500, default: undefined, description: 'validity in days (default 3650 for a CA, 825 for a certificate)' },
  { name: 'ca-name', kind: 'string', default: 'Troupe cluster CA', description: "create-ca: the CA's CN" },
  { name: 'force', kind: 'bool', default: false, description: 'overwrite files that exist' },
];

const USAGE = 'give create-ca --out DIR, or issue --ca DIR --name NAME [--dns HOST]... [--ip ADDR]... [--days N] --out DIR';

function refuseOverwrite(paths: string[], force: boolean): void {
  if (force) return;
  const there = paths.filter((p) => existsSync(p));
  if (there.length > 0) throw new ConfigError(`${there.join(' and ')} already exist${there.length === 1 ? 's' : ''}; move ${there.length === 1 ? 'it' : 'them'} away, choose another --out, or give --force to overwrite`);
}

function write(path: string, text: string, mode: number): void {
  // writeFileSync's mode applies only to a new file: one being overwritten gets it before the key is in it.
  if (existsSync(path)) chmodSync(path, mode);
  writeFileSync(path, text, { mode });
}

function readCa(dir: string): { cert: string; key: string } {
  const certPath = join(dir, 'ca.pem');
  const keyPath = join(dir, 'ca-key.pem');
  const problems: string[] = [];
  const read = (p: string): string => {
    try {
      return readFileSync(p, 'utf8');
    } catch (err) {
      problems.push(`setting ca: cannot read ${p} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the directory troupe certs create-ca --out wrote`);
      return '';
    }
  };
  const cert = read(certPath);
  const key = read(keyPath);
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return { cert, key };
}

export async function runCerts(values: SettingValues, rest: string[]): Promise<number> {
  const [action, ...extra] = rest;
  if (extra.length > 0) throw new ConfigError(`unexpected argument${extra.length > 1 ? 's' : ''} ${extra.map((e) => `"${e}"`).join(' ')}; ${USAGE}`);
  if (action !== 'create-ca' && action !== 'issue') throw new ConfigError(`${action === undefined ? 'no action given' : `unknown action "${action}"`}; ${USAGE}`);
  if (values.out === undefined) throw new ConfigError(`setting out: missing; ${USAGE}`);
  const out = resolve(String(values.out));
  const force = values.force === true;
  const days = values.days === undefined ? undefined : Number(values.days);

  if (action === 'create-ca') {
    const certPath = join(out, 'ca.pem');
    const keyPath = join(out, 'ca-key.pem');
    refuseOverwrite([certPath, keyPath], force);
    const pair = await createCertificateAuthority({ name: String(values['ca-name']), days });
    mkdirSync(out, { recursive: true, mode: 0o700 });
    write(keyPath, pair.key, 0o600);
    write(certPath, pair.cert, 0o644);
    process.stdout.write(`troupe certs: wrote the CA ${certPath} and its key ${keyPath} (0600; keep it off the nodes)\n`);
    return 0;
  }

  const problems: string[] = [];
  if (values.ca === undefined) problems.push('setting ca: missing; give the directory troupe certs create-ca --out wrote');
  if (values.name === undefined) problems.push("setting name: missing; give the node's --node-name");
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  const name = String(values.name);
  checkCertificateName(name, 'setting name');
  const certPath = join(out, `${name}.pem`);
  const keyPath = join(out, `${name}-key.pem`);
  refuseOverwrite([certPath, keyPath], force);
  const pair = await issueCertificate({ ca: readCa(resolve(String(values.ca))), name, dns: values.dns as string[], ip: values.ip as string[], days });
  mkdirSync(out, { recursive: true, mode: 0o700 });
  write(keyPath, pair.key, 0o600);
  write(certPath, pair.cert, 0o644);
  process.stdout.write(`troupe certs: wrote ${certPath} and its key ${keyPath} (0600) for "${name}"\n`);
  return 0;
}

export const certsCommand = {
  summary: "make the cluster's CA (create-ca --out DIR) and certificates for nodes and operators (issue --ca DIR --name NAME --out DIR)",
  settings: certsSettings,
  run: runCerts,
};
