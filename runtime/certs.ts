// The X.509 work of `troupe certs`: a cluster CA, and node certificates it issues (ECDSA P-256,
// usable as server and client certificate), built with @peculiar/x509 over node:crypto's WebCrypto.

import 'reflect-metadata'; // @peculiar/x509 2.x needs a Reflect polyfill loaded before it
import * as x509 from '@peculiar/x509';
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
// The library's types name the DOM's Crypto, which this project's lib (ES2023, no DOM) does not define.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Certificates start a little in the past, so a machine whose clock is slightly behind accepts them. */
const BACKDATE_MS = 5 * 60_000;

export interface PemPair {
  /** The certificate, PEM. */
  cert: string;
  /** Its private key, unencrypted PKCS#8 PEM: keep it 0600. */
  key: string;
}

/** A positive 128-bit serial number (RFC 5280 asks for at most 20 bytes, non-negative). */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

function keyPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Names a certificate may carry as CN and DNS name: host-name characters only. */
export function checkCertificateName(name: string, what: string): void {
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(name)) {
    throw new ConfigError(`${what}: got "${name}"; expected a host-like name of letters, digits, '-' and '.' (a node's --node-name, e.g. node-1)`);
  }
}

function distinguishedName(cn: string): string {
  // x509.Name parses RFC 4514 text; the characters checkCertificateName allows need no escaping.
  return `CN=${cn}`;
}

/** A self-signed CA for one cluster (path length 0: it issues node certificates, no other CAs). */
export async function createCertificateAuthority(o: { name?: string; days?: number; now?: Date } = {}): Promise<PemPair> {
  const name = o.name ?? 'Troupe cluster CA';
  if (!/^[\w .-]{1,64}$/.test(name)) throw new ConfigError(`CA name: got "${name}"; expected up to 64 letters, digits, spaces, '.', '-' or '_'`);
  const now = o.now ?? new Date();
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: distinguishedName(name),
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + (o.days ?? 3650) * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem') + '\n', key: keyPem(keys.privateKey) };
}

export interface IssueOptions {
  /** The CA that signs: its certificate and key, PEM. */
  ca: PemPair;
  /** CN and first DNS subjectAltName: the node's --node-name. */
  name: string;
  /** More DNS names (the host names peers dial). */
  dns?: readonly string[];
  /** IP addresses, v4 or v6. */
  ip?: readonly string[];
  /** Validity in days; default 825 (what browsers and most tooling still accept). */
  days?: number;
  now?: Date;
}

/** A certificate for a node (or an operator's `troupe inspect`): serverAuth and clientAuth. */
export async function issueCertificate(o: IssueOptions): Promise<PemPair> {
  checkCertificateName(o.name, 'setting name');
  for (const d of o.dns ?? []) checkCertificateName(d, 'setting dns');
  for (const ip of o.ip ?? []) if (isIP(ip) === 0) throw new ConfigError(`setting ip: got "${ip}"; expected an IPv4 or IPv6 address such as 10.0.0.5`);
  let caCert: x509.X509Certificate;
  let caKey: CryptoKey;
  try {
    caCert = new x509.X509Certificate(o.ca.cert);
    const der = createPrivateKey(o.ca.key).export({ type: 'pkcs8', format: 'der' });
    caKey = (await webcrypto.subtle.importKey('pkcs8', der, ALGORITHM, false, ['sign'])) as CryptoKey;
  } catch (err) {
    throw new ConfigError(`the CA cannot be read: ${(err as Error).message}; give the directory troupe certs create-ca wrote (ca.pem and ca-key.pem, an ECDSA P-256 key)`);
  }
  const check = new X509Certificate(o.ca.cert);
  if (!check.ca) throw new ConfigError(`the CA certificate (${check.subject}) is not a CA certificate; give the directory troupe certs create-ca wrote`);
  if (!check.checkPrivateKey(createPrivateKey(o.ca.key))) throw new ConfigError('the CA key does not belong to the CA certificate; give the ca.pem and ca-key.pem written together by troupe certs create-ca');
  const now = o.now ?? new Date();
  let notAfter = new Date(now.getTime() + (o.days ?? 825) * DAY_MS);
  // X.509 times are whole seconds: a CA made a moment ago for as many days ends a little earlier.
  if (notAfter.getTime() > Date.parse(check.validTo) && notAfter.getTime() - Date.parse(check.validTo) < 60_000) notAfter = new Date(check.validTo);
  if (notAfter.getTime() > Date.parse(check.validTo)) {
    throw new ConfigError(`a certificate valid for ${o.days ?? 825} days would outlive its CA (valid to ${new Date(check.validTo).toISOString()}); give fewer --days`);
  }
  const keys = await newKeys();
  const names: x509.JsonGeneralName[] = [...new Set([o.name, ...(o.dns ?? [])])].map((value) => ({ type: 'dns', value }));
  for (const value of o.ip ?? []) names.push({ type: 'ip', value });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: distinguishedName(o.name),
    issuer: caCert.subject,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter,
    signingKey: caKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { cert: cert.toString('pem') + '\n', key: keyPem(keys.privateKey) };
}
