// Mutual TLS on the cluster port. An independent client (grpc-js's generic client with a service
// definition made here, and node:tls) probes it: refused in plaintext, without a client
// certificate, with another CA's; through with one of the cluster's CA, but only for the node its
// certificate names. A rotated certificate is picked up by new connections. Two nodes over Redis
// exchange asks over mTLS, and `troupe inspect` reaches them with certificates, not without. The
// CLI refuses a cluster node without TLS settings, and files that do not fit.

import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { mkdtempSync } from 'node:fs';
import { createCertificateAuthority, issueCertificate, type PemPair } from '../../runtime/certs.js';
import { checkTlsFiles, ClusterTls, nodeNameOf } from '../../runtime/cluster/cluster-tls.js';
import { encodeBatch, encodeHello } from '../../runtime/cluster/frame-codec.js';
import { ClusterTransport, LINK_REFUSED } from '../../runtime/cluster/transport.js';
import { ConfigError, startNode, type TroupeNode } from '../../runtime/index.js';
import { newNodeId } from '../../runtime/node.js';
import { InspectSession } from '../../runtime/inspector/session.js';
import { partitionOf } from '../../runtime/partition.js';
import { COUNTER, tempDir } from '../runtime/helpers.js';
import { dropCluster, eventually, newRedis, quietLog, REDIS_URL, uniqueCluster } from './helpers.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;
const P = 64;

interface Files {
  ca: string;
  cert: string;
  key: string;
}

/** A CA in `dir`, and for each name its certificate and key: the files a node is given. */
async function pki(dir: string, names: string[], o: { caName?: string } = {}): Promise<{ ca: PemPair; files: Record<string, Files> }> {
  mkdirSync(dir, { recursive: true });
  const ca = await createCertificateAuthority({ name: o.caName ?? 'test CA' });
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  const files: Record<string, Files> = {};
  for (const name of names) {
    const pair = await issueCertificate({ ca, name });
    writeFileSync(join(dir, `${name}.pem`), pair.cert);
    writeFileSync(join(dir, `${name}-key.pem`), pair.key, { mode: 0o600 });
    files[name] = { ca: join(dir, 'ca.pem'), cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
  }
  return { ca, files };
}

function scratch(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---- an independent client of the Cluster service ---------------------------------------------

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/** protos/cluster.proto `Frame { bytes data = 1; }`, encoded by hand. */
const frame = (data: Buffer): Buffer => Buffer.concat([Buffer.from([0x0a]), varint(data.length), data]);

const LinkClient = grpc.makeGenericClientConstructor(
  {
    Link: {
      path: '/troupe.cluster.Cluster/Link',
      requestStream: true,
      responseStream: true,
      requestSerialize: frame,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  },
  'Cluster',
);

/** Opens a Link stream, writes the frames, and resolves with the error the call ends with (or 'open' after `quietMs`). */
function probe(port: number, creds: grpc.ChannelCredentials, frames: Buffer[], quietMs = 1500): Promise<{ outcome: 'error'; err: grpc.ServiceError } | { outcome: 'open' }> {
  const client = new LinkClient(`127.0.0.1:${port}`, creds, { 'grpc.ssl_target_name_override': 'tls-b' });
  return new Promise((resolve) => {
    const call = (client as unknown as { Link(): grpc.ClientDuplexStream<Buffer, Buffer> }).Link();
    const timer = setTimeout(() => {
      call.cancel();
      client.close();
      resolve({ outcome: 'open' });
    }, quietMs);
    call.on('error', (err: grpc.ServiceError) => {
      clearTimeout(timer);
      client.close();
      resolve({ outcome: 'error', err });
    });
    call.on('data', () => {});
    for (const f of frames) call.write(f);
  });
}

const pt = (id: string) => partitionOf(id, P);

test('an independent client on the cluster port: refused in plaintext, without a client certificate, with another CA; through with the cluster CA, for the node its certificate names only', async (t) => {
  const dir = scratch(t);
  const { files } = await pki(join(dir, 'cluster'), ['tls-a', 'tls-b', 'intruder']);
  const other = await pki(join(dir, 'other'), ['tls-a'], { caName: 'another CA' });
  const got: { from: string; m: unknown[] }[] = [];
  const start = (self: string, f: Files, peers: Record<string, number>) =>
    ClusterTransport.start({
      self,
      cluster: 'c-tls',
      partitions: P,
      tls: ClusterTls.load({ ...f, log: quietLog }),
      resolve: (peer) => (peers[peer] ? `127.0.0.1:${peers[peer]}` : undefined),
      onBatch: (from, m) => got.push({ from, m }),
      onRedirect: () => {},
      backoff: { initialMs: 20, maxMs: 200 },
      log: quietLog,
    });
  const peers: Record<string, number> = {};
  const aId = newNodeId('tls-a');
  const bId = newNodeId('tls-b');
  const b = await start(bId, files['tls-b']!, peers);
  const a = await start(aId, files['tls-a']!, peers);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  peers[aId] = a.port;
  peers[bId] = b.port;

  // Two nodes of the cluster talk.
  a.send(bId, 'x/1', pt('x/1'), 'h', 'over mTLS', 0, 0);
  await eventually(() => got.some((g) => g.from === aId && g.m[3] === 'over mTLS'), 10_000, 'a batch from a to b over mutual TLS');

  const ca = readFileSync(files['tls-b']!.ca);
  const hello = (id: string) => encodeHello(id, 'c-tls', P);
  const tell = (text: string) => encodeBatch(['x/2', pt('x/2'), 'h', text, 0, 0]);

  // Plaintext: no TLS handshake, no link.
  const plain = await probe(b.port, grpc.credentials.createInsecure(), [hello(newNodeId('intruder')), tell('plaintext')]);
  t.is(plain.outcome, 'error');
  // TLS that verifies the server, but presents no client certificate.
  const noCert = await probe(b.port, grpc.credentials.createSsl(ca), [hello(newNodeId('intruder')), tell('no cert')]);
  t.is(noCert.outcome, 'error');
  // A client certificate from another CA (named like a member, even).
  const foreign = other.files['tls-a']!;
  const otherCa = await probe(b.port, grpc.credentials.createSsl(ca, readFileSync(foreign.key), readFileSync(foreign.cert)), [hello(newNodeId('tls-a')), tell('other CA')]);
  t.is(otherCa.outcome, 'error');

  // A certificate of the cluster's CA whose name is not the node id's in the hello: refused, generic text.
  const intruder = files['intruder']!;
  const intruderCreds = () => grpc.credentials.createSsl(ca, readFileSync(intruder.key), readFileSync(intruder.cert));
  const posing = await probe(b.port, intruderCreds(), [hello(newNodeId('tls-a')), tell('posing as tls-a')]);
  t.is(posing.outcome, 'error');
  if (posing.outcome === 'error') {
    t.is(posing.err.code, grpc.status.PERMISSION_DENIED);
    t.is(posing.err.details, LINK_REFUSED);
  }
  // The same certificate, announcing the node it names: through (its tell arrives).
  const intruderId = newNodeId('intruder');
  t.is(nodeNameOf(intruderId), 'intruder');
  const through = probe(b.port, intruderCreds(), [hello(intruderId), tell('from a certified node')], 3000);
  await eventually(() => got.some((g) => g.from === intruderId && g.m[3] === 'from a certified node'), 10_000, 'the certified client\'s tell');
  t.false(got.some((g) => ['plaintext', 'no cert', 'other CA', 'posing as tls-a'].includes(g.m[3] as string)), 'nothing from the refused clients arrived');
  t.is((await through).outcome, 'open');

  // A dialer checks the server's name too: b's certificate does not name "tls-z".
  const zId = newNodeId('tls-z');
  peers[zId] = b.port;
  a.send(zId, 'x/3', pt('x/3'), 'h', 'to a node b is not', 0, 0);
  await eventually(() => (a.stats().find((s) => s.peer === zId)?.dials ?? 0) >= 3, 10_000, 'a few dials to tls-z');
  t.false(a.stats().find((s) => s.peer === zId)!.connected, 'no link to an address whose certificate names another node');
  t.false(got.some((g) => g.m[3] === 'to a node b is not'));
});

test('a rotated certificate (files replaced) is used by connections made after it; a half-written rotation keeps the old one', async (t) => {
  const dir = scratch(t);
  const { ca, files } = await pki(join(dir, 'pki'), ['tls-r', 'client']);
  const live = { ca: join(dir, 'live-ca.pem'), cert: join(dir, 'live.pem'), key: join(dir, 'live-key.pem') };
  for (const k of ['ca', 'cert', 'key'] as const) writeFileSync(live[k], readFileSync(files['tls-r']![k]));
  const tls = ClusterTls.load({ ...live, refreshMs: 100, log: quietLog });
  const serialA = tls.certificate.serialNumber;
  const server = await ClusterTransport.start({ self: newNodeId('tls-r'), cluster: 'c', partitions: P, tls, resolve: () => undefined, onBatch: () => {}, onRedirect: () => {}, log: quietLog });
  t.teardown(() => server.close());

  const client = files['client']!;
  const serverSerial = () =>
    new Promise<string>((resolve, reject) => {
      const s = tlsConnect(
        { host: '127.0.0.1', port: server.port, ca: readFileSync(client.ca), cert: readFileSync(client.cert), key: readFileSync(client.key), servername: 'tls-r', ALPNProtocols: ['h2'], checkServerIdentity: () => undefined },
        () => {
          const serial = s.getPeerCertificate().serialNumber;
          s.destroy();
          resolve(serial.toUpperCase());
        },
      );
      s.on('error', reject);
    });
  await eventually(async () => (await serverSerial()) === serialA.toUpperCase(), 5000, 'the first certificate served');

  // Certificate B from the same CA, written beside and renamed over the files (as a rotation tool does).
  const b = await issueCertificate({ ca, name: 'tls-r' });
  writeFileSync(live.key + '.new', b.key);
  writeFileSync(live.cert + '.new', b.cert);
  renameSync(live.key + '.new', live.key);
  renameSync(live.cert + '.new', live.cert);
  const serialB = new (await import('node:crypto')).X509Certificate(b.cert).serialNumber.toUpperCase();
  t.not(serialB, serialA.toUpperCase());
  await eventually(async () => (await serverSerial()) === serialB, 10_000, "a new connection to see certificate B's serial");
  t.is(tls.certificate.serialNumber.toUpperCase(), serialB);

  // A certificate without its key (the key file not replaced yet): refused, B stays in use.
  const c = await issueCertificate({ ca, name: 'tls-r' });
  writeFileSync(live.cert, c.cert);
  t.false(tls.reload(), 'a certificate whose key is not there yet is not taken');
  t.is(await serverSerial(), serialB);
});

test('the files are checked at start, each problem naming the setting and what to do', async (t) => {
  const dir = scratch(t);
  const { ca, files } = await pki(join(dir, 'pki'), ['n1', 'n2']);
  const other = await pki(join(dir, 'other'), ['n1']);
  const f = files['n1']!;
  t.deepEqual(checkTlsFiles({ ...f, expectName: 'n1' }).problems, []);
  const problems = (o: Partial<Files> & { expectName?: string }) => checkTlsFiles({ ...f, ...o }).problems.join('\n');
  t.regex(problems({ ca: join(dir, 'nope.pem') }), /setting tls-ca: file .*nope\.pem does not exist/);
  writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
  t.regex(problems({ cert: join(dir, 'junk.pem') }), /setting tls-cert: .*junk\.pem holds no PEM certificate/);
  t.regex(problems({ key: join(dir, 'junk.pem') }), /setting tls-key: .*junk\.pem is not a PEM private key/);
  t.regex(problems({ key: files['n2']!.key }), /the key in .*n2-key\.pem does not belong to the certificate/);
  t.regex(problems({ ca: other.files['n1']!.ca }), /was not issued by the CA in/);
  t.regex(problems({ ca: f.cert }), /is not a CA certificate/);
  t.regex(problems({ expectName: 'n9' }), /names n1, not this node's name "n9".*troupe certs issue --name n9/);
  const old = await issueCertificate({ ca, name: 'n1', days: 1, now: new Date(Date.now() - 3 * 86_400_000) });
  writeFileSync(join(dir, 'old.pem'), old.cert);
  writeFileSync(join(dir, 'old-key.pem'), old.key);
  t.regex(problems({ cert: join(dir, 'old.pem'), key: join(dir, 'old-key.pem') }), /expired on .*troupe certs issue/);
  t.throws(() => ClusterTls.load({ ...f, ca: join(dir, 'nope.pem') }), { message: /tls-ca/, instanceOf: ConfigError });
});

test('the CLI refuses a cluster node without TLS settings, or with some of them, saying what to give', (t) => {
  const run = (...args: string[]) => spawnSync(process.execPath, [TROUPE, 'node', '--redis', 'redis://127.0.0.1:6379', '--gateways', 'who', ...args], { encoding: 'utf8', timeout: 60_000 });
  const none = run();
  t.is(none.status, 2);
  t.regex(none.stderr, /--tls-ca FILE --tls-cert FILE --tls-key FILE/);
  t.regex(none.stderr, /troupe certs create-ca/);
  t.regex(none.stderr, /--insecure-cluster/);
  const some = run('--tls-ca', '/nowhere/ca.pem');
  t.is(some.status, 2);
  t.regex(some.stderr, /give all three or none; --tls-ca without --tls-cert and --tls-key/);
  const missing = run('--tls-ca', '/nowhere/ca.pem', '--tls-cert', '/nowhere/n.pem', '--tls-key', '/nowhere/n-key.pem');
  t.is(missing.status, 2);
  t.regex(missing.stderr, /setting tls-cert: file \/nowhere\/n\.pem does not exist/);
});

test('two nodes over mutual TLS exchange asks; troupe inspect lists them with certificates of the CA, and is refused without', async (t) => {
  const dir = scratch(t);
  const { files } = await pki(join(dir, 'pki'), ['tls-n1', 'tls-n2', 'operator']);
  const cluster = uniqueCluster();
  const nodes: TroupeNode[] = [];
  t.teardown(async () => {
    for (const n of nodes.reverse()) await n.stop();
    const redis = newRedis();
    await dropCluster(redis, cluster);
    redis.disconnect();
  });
  for (const name of ['tls-n1', 'tls-n2']) {
    nodes.push(
      await startNode({
        nodeId: newNodeId(name),
        dataDir: tempDir('troupe-tls-node-'),
        shards: 1,
        askTimeoutMs: 10_000,
        actorModules: [COUNTER],
        cluster: { redis: REDIS_URL, name: cluster, host: '127.0.0.1', port: 0 },
        inspector: { mode: 'full', host: '127.0.0.1', port: 0 },
        tls: files[name]!,
        log: quietLog,
      }),
    );
  }
  const [a, b] = nodes as [TroupeNode, TroupeNode];
  const session = new InspectSession({ seed: `127.0.0.1:${a.clusterPort}`, timeoutMs: 5000, askTimeoutMs: 10_000, tls: files['operator'] });
  t.teardown(() => session.close());
  await eventually(
    async () => {
      const r = await session.run('ring');
      const d = r?.data as { members: string[]; servedByNone: number[]; nodes: { serving: number; owns: number }[] } | undefined;
      return !!r?.ok && d!.members.length === 2 && d!.servedByNone.length === 0 && d!.nodes.length === 2 && d!.nodes.every((n) => n.serving === n.owns);
    },
    30_000,
    'the ring of two nodes to settle',
  );
  // Asks from a reach counters on both nodes.
  for (let i = 0; i < 16; i++) t.is(await a.ref('counter', `k${i}`).ask('add', 1), 1);
  const onB = Array.from({ length: 16 }, (_, i) => `counter/k${i}`).filter((id) => b.servesPartition(partitionOf(id, a.partitions)));
  t.true(onB.length > 0, 'some counters live on b');
  t.is(await b.ref('counter', onB[0]!.slice('counter/'.length)).ask('get'), 1);

  const inspect = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [TROUPE, 'inspect', '--node', `127.0.0.1:${a.clusterPort}`, '--timeout', '5s', '--eval', 'nodes', ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
  const op = files['operator']!;
  const listed = await inspect(['--tls-ca', op.ca, '--tls-cert', op.cert, '--tls-key', op.key]);
  t.is(listed.code, 0, listed.stderr);
  t.regex(listed.stdout, new RegExp(`2 nodes in cluster "${cluster}"`));
  t.true(listed.stdout.includes(a.nodeId) && listed.stdout.includes(b.nodeId), listed.stdout);
  const refused = await inspect([]);
  t.not(refused.code, 0);
  t.regex(refused.stderr, /unreachable.*--tls-ca, --tls-cert and --tls-key/);
});
