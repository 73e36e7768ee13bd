// Mutual TLS on the cluster port: the CA, certificate and key files of a node, checked at start,
// turned into gRPC server and channel credentials, and reloaded when the files change.

import * as grpc from '@grpc/grpc-js';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import { ConfigError } from '../errors.js';
import { rootLogger, type Logger } from '../log.js';

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaCertificateUpdateListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityCertificateUpdateListener = grpc.experimental.IdentityCertificateUpdateListener;

/** The three PEM files of a node (or of `troupe inspect`). */
export interface ClusterTlsFiles {
  /** The cluster's CA certificate(s): peers must present a certificate it issued. */
  ca: string;
  /** This node's certificate (then any intermediates). */
  cert: string;
  /** Its private key, unencrypted PKCS#8 or SEC1/PKCS#1 PEM. */
  key: string;
}

export interface ClusterTlsOptions extends ClusterTlsFiles {
  /** How often the files are read again for a rotation; default 5000 ms. */
  refreshMs?: number;
  /** A name the certificate must carry (the node's --node-name), checked at start. */
  expectName?: string;
  /** The setting names to quote in errors; default tls-ca, tls-cert, tls-key. */
  settings?: { ca: string; cert: string; key: string };
  log?: Logger;
}

/** What a set of files holds once checked. */
interface CheckedFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  leaf: X509Certificate;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function pemCertificates(pem: string): X509Certificate[] {
  return (pem.match(PEM_CERT) ?? []).map((block) => new X509Certificate(block));
}

/** The names a certificate gives its holder: its CN and its DNS subjectAltNames. */
export function certificateNames(cert: Pick<PeerCertificate, 'subject' | 'subjectaltname'> | X509Certificate): string[] {
  const names = new Set<string>();
  if (cert instanceof X509Certificate) {
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
    if (cn) names.add(cn);
    for (const part of (cert.subjectAltName ?? '').split(', ')) if (part.startsWith('DNS:')) names.add(part.slice(4));
  } else {
    const cn = cert.subject?.CN as string | string[] | undefined;
    for (const c of Array.isArray(cn) ? cn : cn ? [cn] : []) names.add(c);
    for (const part of (cert.subjectaltname ?? '').split(', ')) if (part.startsWith('DNS:')) names.add(part.slice(4));
  }
  return [...names];
}

/** The node name of a node id (`<node-name>-<time36>-<hex6>`, runtime/node.ts newNodeId). */
export function nodeNameOf(nodeId: string): string {
  const parts = nodeId.split('-');
  return parts.length >= 3 ? parts.slice(0, -2).join('-') : nodeId;
}

function readProblem(path: string, setting: string, err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT') return `setting ${setting}: file ${path} does not exist; give the path of a PEM file (troupe certs makes them)`;
  if (err.code === 'EACCES') return `setting ${setting}: file ${path} is not readable by this user (uid ${process.getuid?.() ?? '?'}); fix its owner or mode`;
  if (err.code === 'EISDIR') return `setting ${setting}: ${path} is a directory; give the PEM file inside it`;
  return `setting ${setting}: file ${path} cannot be read: ${err.message}`;
}

function when(d: string): string {
  return new Date(d).toISOString();
}

/**
 * Reads and checks the files: each exists and parses as PEM, the key belongs to the certificate,
 * the certificate was issued by the CA (directly or through intermediates in its file), and both
 * are valid now. Returns every problem found, or the files' bytes.
 */
export function checkTlsFiles(o: ClusterTlsOptions, now = Date.now()): { problems: string[]; files?: CheckedFiles } {
  const s = o.settings ?? { ca: 'tls-ca', cert: 'tls-cert', key: 'tls-key' };
  const problems: string[] = [];
  const read = (path: string, setting: string): Buffer | undefined => {
    try {
      return readFileSync(path);
    } catch (err) {
      problems.push(readProblem(path, setting, err as NodeJS.ErrnoException));
      return undefined;
    }
  };
  const caBytes = read(o.ca, s.ca);
  const certBytes = read(o.cert, s.cert);
  const keyBytes = read(o.key, s.key);

  let cas: X509Certificate[] = [];
  if (caBytes) {
    try {
      cas = pemCertificates(caBytes.toString('utf8'));
      if (cas.length === 0) problems.push(`setting ${s.ca}: ${o.ca} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the cluster's ca.pem`);
    } catch (err) {
      problems.push(`setting ${s.ca}: ${o.ca} is not a valid PEM certificate: ${(err as Error).message}`);
    }
    for (const ca of cas) {
      if (!ca.ca) problems.push(`setting ${s.ca}: the certificate in ${o.ca} (${ca.subject.replace(/\n/g, ', ')}) is not a CA certificate; give the CA's ca.pem, not a node's certificate`);
      else if (Date.parse(ca.validTo) < now) problems.push(`setting ${s.ca}: the CA certificate in ${o.ca} expired on ${when(ca.validTo)}; make a new CA (troupe certs create-ca) and issue new certificates from it`);
    }
  }
  let chain: X509Certificate[] = [];
  if (certBytes) {
    try {
      chain = pemCertificates(certBytes.toString('utf8'));
      if (chain.length === 0) problems.push(`setting ${s.cert}: ${o.cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    } catch (err) {
      problems.push(`setting ${s.cert}: ${o.cert} is not a valid PEM certificate: ${(err as Error).message}`);
    }
  }
  let key: KeyObject | undefined;
  if (keyBytes) {
    try {
      key = createPrivateKey(keyBytes);
    } catch (err) {
      const encrypted = /ENCRYPTED/.test(keyBytes.toString('utf8', 0, 200));
      problems.push(
        encrypted
          ? `setting ${s.key}: ${o.key} is an encrypted key; give an unencrypted PEM key (kept 0600), as troupe certs issue writes`
          : `setting ${s.key}: ${o.key} is not a PEM private key: ${(err as Error).message}`,
      );
    }
  }
  const leaf = chain[0];
  if (leaf) {
    const subject = leaf.subject.replace(/\n/g, ', ');
    if (Date.parse(leaf.validTo) < now) problems.push(`setting ${s.cert}: the certificate in ${o.cert} (${subject}) expired on ${when(leaf.validTo)}; issue a new one (troupe certs issue) and replace the files: a running node picks them up`);
    if (Date.parse(leaf.validFrom) > now) problems.push(`setting ${s.cert}: the certificate in ${o.cert} (${subject}) is not valid before ${when(leaf.validFrom)}; check this machine's clock`);
    if (key && !leaf.checkPrivateKey(key)) problems.push(`settings ${s.cert} and ${s.key}: the key in ${o.key} does not belong to the certificate in ${o.cert} (${subject}); give the key issued with it`);
    if (cas.length > 0 && !chainsTo(leaf, chain.slice(1), cas)) {
      problems.push(`settings ${s.cert} and ${s.ca}: the certificate in ${o.cert} (${subject}, issued by ${leaf.issuer.replace(/\n/g, ', ')}) was not issued by the CA in ${o.ca}; issue it from this CA (troupe certs issue --ca DIR)`);
    }
    if (o.expectName !== undefined && !certificateNames(leaf).includes(o.expectName)) {
      problems.push(
        `setting ${s.cert}: the certificate in ${o.cert} names ${certificateNames(leaf).join(', ') || 'nobody'}, not this node's name "${o.expectName}" (--node-name); ` +
          `the other nodes refuse a node whose certificate does not name it: issue one with troupe certs issue --name ${o.expectName}`,
      );
    }
  }
  if (problems.length > 0 || !caBytes || !certBytes || !keyBytes || !leaf) return { problems };
  return { problems, files: { ca: caBytes, cert: certBytes, key: keyBytes, leaf } };
}

/** True when `cert` was signed by one of `cas`, directly or through `intermediates` (at most 4 deep). */
function chainsTo(cert: X509Certificate, intermediates: X509Certificate[], cas: X509Certificate[]): boolean {
  let current = cert;
  for (let depth = 0; depth < 5; depth++) {
    if (cas.some((ca) => current.checkIssued(ca) && current.verify(ca.publicKey))) return true;
    const up = intermediates.find((i) => i !== current && current.checkIssued(i) && current.verify(i.publicKey));
    if (!up) return false;
    current = up;
  }
  return false;
}

/**
 * The files as a gRPC certificate provider: read again every `refreshMs` while some server or
 * channel uses them; a change is published only once the new set passes checkTlsFiles (a rotation
 * caught half-written keeps the old certificates until the next read). grpc-js's own
 * FileWatcherCertificateProvider publishes whatever it read, and a key that does not match its
 * certificate then stops the server from accepting connections until the next read.
 */
class CheckedCertificateFiles implements CertificateProvider {
  readonly #o: ClusterTlsOptions;
  readonly #log: Logger;
  readonly #refreshMs: number;
  #current: CheckedFiles;
  #timer: NodeJS.Timeout | undefined;
  #lastProblem = '';
  readonly #caListeners = new Set<CaCertificateUpdateListener>();
  readonly #identityListeners = new Set<IdentityCertificateUpdateListener>();

  constructor(o: ClusterTlsOptions, first: CheckedFiles) {
    this.#o = o;
    this.#log = (o.log ?? rootLogger()).child({ part: 'cluster-tls' });
    this.#refreshMs = o.refreshMs ?? 5000;
    this.#current = first;
  }

  get current(): CheckedFiles {
    return this.#current;
  }

  /** Reads the files now; publishes them when they changed and pass the checks. */
  reload(): boolean {
    let bytes: Buffer[];
    try {
      bytes = [readFileSync(this.#o.ca), readFileSync(this.#o.cert), readFileSync(this.#o.key)];
    } catch (err) {
      this.#problem(`cannot read the TLS files: ${(err as Error).message}`);
      return false;
    }
    const [ca, cert, key] = bytes as [Buffer, Buffer, Buffer];
    if (ca.equals(this.#current.ca) && cert.equals(this.#current.cert) && key.equals(this.#current.key)) return false;
    const { problems, files } = checkTlsFiles({ ...this.#o, expectName: undefined });
    if (!files) {
      this.#problem(problems.join('; '));
      return false;
    }
    this.#lastProblem = '';
    const before = this.#current.leaf.serialNumber;
    this.#current = files;
    this.#log.info({ serial: files.leaf.serialNumber, before, subject: files.leaf.subject, validTo: files.leaf.validTo }, 'TLS certificate files changed; new connections use them');
    for (const l of this.#identityListeners) l({ certificate: files.cert, privateKey: files.key });
    for (const l of this.#caListeners) l({ caCertificate: files.ca });
    return true;
  }

  #problem(text: string): void {
    if (text === this.#lastProblem) return;
    this.#lastProblem = text;
    this.#log.warn({ problem: text }, 'the TLS files changed but cannot be used; keeping the certificates in use until they are fixed');
  }

  #watch(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.reload(), this.#refreshMs);
    this.#timer.unref();
  }

  #unwatch(): void {
    if (this.#caListeners.size > 0 || this.#identityListeners.size > 0 || !this.#timer) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  addCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.#caListeners.add(listener);
    this.#watch();
    process.nextTick(() => this.#caListeners.has(listener) && listener({ caCertificate: this.#current.ca }));
  }

  removeCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.#caListeners.delete(listener);
    this.#unwatch();
  }

  addIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.#identityListeners.add(listener);
    this.#watch();
    process.nextTick(() => this.#identityListeners.has(listener) && listener({ certificate: this.#current.cert, privateKey: this.#current.key }));
  }

  removeIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.#identityListeners.delete(listener);
    this.#unwatch();
  }
}

/** Accepts a server certificate only if it names the peer the channel was dialed for. */
function checkPeerName(name: string, cert: PeerCertificate): Error | undefined {
  const names = certificateNames(cert);
  if (names.includes(name)) return undefined;
  return Object.assign(new Error(`the peer's certificate names ${names.join(', ') || 'nobody'}, not node name "${name}"`), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
}

/** A node's TLS: one set of checked, reloaded files behind the server and channel credentials. */
export class ClusterTls {
  readonly files: ClusterTlsFiles;
  readonly #provider: CheckedCertificateFiles;
  #server: grpc.ServerCredentials | undefined;
  #channel: grpc.ChannelCredentials | undefined;

  private constructor(o: ClusterTlsOptions, checked: CheckedFiles) {
    this.files = { ca: o.ca, cert: o.cert, key: o.key };
    this.#provider = new CheckedCertificateFiles(o, checked);
  }

  /** Checks the files (ConfigError naming every problem and the setting to fix) and loads them. */
  static load(o: ClusterTlsOptions): ClusterTls {
    const { problems, files } = checkTlsFiles(o);
    if (!files) throw new ConfigError(problems.join('\n'));
    return new ClusterTls(o, files);
  }

  /** The certificate in use now (its serial changes on a rotation). */
  get certificate(): X509Certificate {
    return this.#provider.current.leaf;
  }

  /** Reads the files now rather than at the next refresh (tests, or a SIGHUP handler). */
  reload(): boolean {
    return this.#provider.reload();
  }

  /**
   * For a server: presents this node's certificate and requires a client certificate issued by
   * the CA (the TLS handshake fails without one). One object for every server of the node.
   */
  serverCredentials(): grpc.ServerCredentials {
    // One provider for both roles: grpc-js 1.14's createCertificateProviderServerCredentials hands
    // its two providers to the constructor in the other order, which one shared provider makes moot.
    this.#server ??= grpc.experimental.createCertificateProviderServerCredentials(this.#provider, this.#provider, true);
    return this.#server;
  }

  /**
   * For a client: presents this node's certificate and verifies the server's against the CA. With
   * `channelOptions(name)`, the server's certificate must also name `name` (CN or DNS SAN).
   */
  channelCredentials(): grpc.ChannelCredentials {
    this.#channel ??= grpc.experimental.createCertificateProviderChannelCredentials(this.#provider, this.#provider, { checkServerIdentity: checkPeerName });
    return this.#channel;
  }

  /** Channel options that make the channel expect a server certificate naming `name` (also sent as SNI). */
  static expectServerName(name: string): grpc.ChannelOptions {
    return { 'grpc.ssl_target_name_override': name };
  }
}

/** The name in a server call's client certificate, or undefined for a plaintext call. */
export function callerCertificate(call: { getAuthContext?(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } }): PeerCertificate | undefined {
  const auth = call.getAuthContext?.();
  return auth?.transportSecurityType === 'ssl' ? auth.sslPeerCertificate : undefined;
}
