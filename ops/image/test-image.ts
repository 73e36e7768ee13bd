// `npm run test:image`: builds ops/Dockerfile as it is with buildah (on the local base of
// ops/image/base.sh), starts a node from the image the way a container engine would (its
// entrypoint, its user, /data a volume), asks each service one thing, stops it with SIGTERM and
// checks it exits 0. The node joins a cluster of its own on the test Redis (TROUPE_TEST_REDIS), so
// SIGTERM is a real leave. Prints the image size on its last line. Needs root, buildah, debootstrap.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { signToken } from '../../gateways/carts/auth.js';
import { serviceOf } from '../../gateways/carts/protos.js';
import { BullmqEventQueue } from '../../gateways/events/bullmq-queue.js';
import { Redis } from 'ioredis';
import { projectRoot, protoPath } from '../../runtime/index.js';

const ROOT = projectRoot();
const IMAGE = process.env.TROUPE_TEST_IMAGE ?? 'localhost/troupe:test';
const READY_WITHIN_MS = 120_000;
/** Above --events-drain-timeout (30 s): what a container engine's grace period should be too. */
const STOP_WITHIN_MS = 60_000;
/** The node from the image joins a cluster of its own name on this Redis (.ci/run starts one). */
const REDIS_URL = process.env.TROUPE_TEST_REDIS ?? 'redis://127.0.0.1:6379';

const started = Date.now();
const log = (msg: string): void => void process.stderr.write(`[image ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

class ImageCheckFailed extends Error {}
function check(ok: unknown, what: string): void {
  if (!ok) throw new ImageCheckFailed(what);
  log(`ok: ${what}`);
}

function run(cmd: string, args: string[], options: { quiet?: boolean } = {}): string {
  return execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', options.quiet ? 'pipe' : 'inherit'] });
}

function needTools(): void {
  if (process.getuid?.() !== 0) throw new ImageCheckFailed('test:image builds with buildah as root (chroot isolation); run it as root');
  for (const tool of ['buildah', 'debootstrap']) {
    try {
      run('sh', ['-c', `command -v ${tool}`], { quiet: true });
    } catch {
      throw new ImageCheckFailed(`${tool} is not installed: apt-get install ${tool} (.ci/run does)`);
    }
  }
}

/** The build itself runs apt-get and npm: say clearly when the network they need is missing. */
function registryReachableFromBase(base: string): void {
  const ctr = run('buildah', ['from', '--pull-never', base], { quiet: true }).trim();
  try {
    run('buildah', ['run', '--isolation', 'chroot', '--network', 'host', ctr, '--', 'npm', 'ping'], { quiet: true });
    log('ok: npm inside the base reaches the registry (--network host)');
  } catch (err) {
    throw new ImageCheckFailed(`npm inside ${base} cannot reach the registry, so npm ci in the build would fail: ${(err as { stderr?: string }).stderr ?? err}`);
  } finally {
    run('buildah', ['rm', ctr], { quiet: true });
  }
}

function build(): void {
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  let revision = 'unknown';
  try {
    revision = run('git', ['rev-parse', 'HEAD'], { quiet: true }).trim();
  } catch {
    // not a git checkout: the label says unknown
  }
  const logFile = join(tmpdir(), `troupe-image-build-${process.pid}.log`);
  log(`buildah bud -f ops/Dockerfile -t ${IMAGE} (cached layers are reused; a cold build takes about ten minutes here)`);
  const t0 = Date.now();
  try {
    const out = execFileSync(
      'buildah',
      [
        'bud', '--isolation', 'chroot', '--network', 'host', '--format', 'docker', '--layers', '--pull-never',
        '-f', 'ops/Dockerfile', '-t', IMAGE,
        '--build-arg', `VERSION=${version}`, '--build-arg', `REVISION=${revision}`, '--build-arg', `CREATED=${new Date().toISOString()}`,
        '.',
      ],
      { cwd: ROOT, encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    writeFileSync(logFile, out);
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    writeFileSync(logFile, `${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    const tail = `${e.stdout ?? ''}\n${e.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    throw new ImageCheckFailed(`buildah bud failed (whole log in ${logFile}):\n${tail}`);
  }
  log(`ok: image built in ${((Date.now() - t0) / 1000).toFixed(0)} s (log in ${logFile})`);
  rmSync(logFile, { force: true });
}

interface ImageConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  User?: string;
  Env?: string[];
  Volumes?: Record<string, unknown>;
  Labels?: Record<string, string>;
  Healthcheck?: { Test?: string[] };
  StopSignal?: string;
}

function imageConfig(): ImageConfig {
  const raw = JSON.parse(run('buildah', ['inspect', '--type', 'image', IMAGE], { quiet: true })) as { Docker: { config: ImageConfig } };
  return raw.Docker.config;
}

function checkConfig(c: ImageConfig): void {
  check(c.User && !/^(0|root)(:|$)/.test(c.User), `runs as a non-root user (${c.User})`);
  check(c.Entrypoint?.[0] === 'node', `entrypoint in exec form, node itself gets the signals (${JSON.stringify(c.Entrypoint)})`);
  check(c.Volumes && '/data' in c.Volumes, 'data in the /data volume');
  check(c.Healthcheck?.Test?.[0] === 'CMD' && c.Healthcheck.Test.join(' ').includes('/readyz'), 'HEALTHCHECK asks /readyz');
  check(!c.StopSignal || c.StopSignal === 'SIGTERM', 'stop signal SIGTERM');
  const labels = c.Labels ?? {};
  check(labels['org.opencontainers.image.version'] && labels['org.opencontainers.image.revision'], `OCI labels with version ${labels['org.opencontainers.image.version']}`);
}

/** Production dependencies only: nothing from devDependencies made it into the runtime stage. */
function checkContents(ctr: string): void {
  const mnt = run('buildah', ['mount', ctr], { quiet: true }).trim();
  try {
    // Packages the lock marks dev-only (typescript, ava, ...); @types/node is not among them, as
    // protobufjs depends on it in production.
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages)
      .filter(([path, p]) => p.dev && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path))
      .map(([path]) => path);
    const present = devOnly.filter((path) => statSync(join(mnt, 'app', path), { throwIfNoEntry: false })?.isDirectory());
    check(devOnly.length > 0 && present.length === 0, `none of the ${devOnly.length} dev-only packages of the lock is in the image${present.length ? ` (found ${present.join(', ')})` : ''}`);
    check(readdirSync(join(mnt, 'app', 'dist')).every((d) => d !== 'test'), 'no compiled tests in the image');
    check(statSync(join(mnt, 'app', 'dist', 'bin', 'troupe.js')).uid === 0, 'the code belongs to root (the node user can only read it)');
  } finally {
    run('buildah', ['umount', ctr], { quiet: true });
  }
}

/** Files the running node wrote outside /data: what a read-only root filesystem would refuse. */
function writesOutsideData(ctr: string, since: number): string[] {
  const mnt = run('buildah', ['mount', ctr], { quiet: true }).trim();
  const found: string[] = [];
  // Mount points buildah run itself provides (and creates empty in the container if missing).
  const skip = new Set(['data', 'proc', 'sys', 'dev', 'run', 'etc/hosts', 'etc/resolv.conf', 'etc/hostname']);
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const rel = relative(mnt, path);
      if (skip.has(rel)) continue;
      // lstat: an absolute symlink in the image (/var/run -> /run) must not lead onto the host.
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(path);
      else if (st.mtimeMs >= since) found.push('/' + rel);
    }
  };
  try {
    walk(mnt);
  } finally {
    run('buildah', ['umount', ctr], { quiet: true });
  }
  return found;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function until(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new ImageCheckFailed(`${what}: not within ${timeoutMs / 1000} s`);
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.setTimeout(5_000, () => {
      s.destroy();
      resolve(false);
    });
  });
}

function whoAnswer(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = createConnection({ host: '127.0.0.1', port }, () => s.write('WHO\r\n'));
    s.setEncoding('utf8');
    s.setTimeout(10_000, () => {
      s.destroy();
      reject(new Error(`WHO on ${port}: no answer within 10 s (got ${JSON.stringify(got)})`));
    });
    s.on('data', (d: string) => {
      got += d;
      if (got.includes('\n')) {
        s.destroy();
        resolve(got.trim());
      }
    });
    s.once('error', reject);
  });
}

function unary(client: grpc.Client, method: string, request: unknown, metadata = new grpc.Metadata()): Promise<any> {
  return new Promise((resolve, reject) =>
    (client as any)[method](request, metadata, { deadline: Date.now() + 10_000 }, (err: Error | null, reply: unknown) => (err ? reject(err) : resolve(reply))),
  );
}

/** The node inside `buildah run`: the process whose parent chain leads to our buildah child. */
function nodePid(buildahPid: number): number | undefined {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const queue = [buildahPid];
  while (queue.length) {
    const pid = queue.shift()!;
    for (const child of children.get(pid) ?? []) {
      try {
        const argv = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0');
        if (/(^|\/)node$/.test(argv[0] ?? '') && argv.includes('dist/bin/troupe.js')) return child;
      } catch {
        continue;
      }
      queue.push(child);
    }
  }
  return undefined;
}

/** Removes the test cluster's keys and its BullMQ queue from the shared Redis (nothing else). */
async function dropClusterKeys(cluster: string, queue: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 2, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `troupe:{${cluster}}:*`, 'COUNT', 500);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  await BullmqEventQueue.destroy(REDIS_URL, queue);
}

async function clusterKeyCount(cluster: string): Promise<number> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 2, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = '0';
    let n = 0;
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `troupe:{${cluster}}:*`, 'COUNT', 500);
      n += keys.length;
      cursor = next;
    } while (cursor !== '0');
    return n;
  } finally {
    redis.disconnect();
  }
}

async function redisAnswers(): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true, connectTimeout: 5_000 });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new ImageCheckFailed(`Redis at ${REDIS_URL} does not answer (${(err as Error).message}): the node from the image joins a cluster there; start one or set TROUPE_TEST_REDIS`);
  } finally {
    redis.disconnect();
  }
}

async function main(): Promise<void> {
  needTools();
  await redisAnswers();
  log('base image (ops/image/base.sh)');
  execFileSync('bash', [join(ROOT, 'ops', 'image', 'base.sh')], { cwd: ROOT, stdio: 'inherit' });
  const from = readFileSync(join(ROOT, 'ops', 'Dockerfile'), 'utf8').match(/^FROM\s+(\S+)/m)?.[1] ?? 'node:20-bookworm-slim';
  registryReachableFromBase(from.includes('/') ? from : `docker.io/library/${from}`);
  build();
  const config = imageConfig();
  checkConfig(config);

  const ctr = run('buildah', ['from', '--pull-never', '--name', `troupe-image-test-${process.pid}`, IMAGE], { quiet: true }).trim();
  // buildah run mounts the image's VOLUME /data as an anonymous volume (over any -v given for
  // it), as an engine does without -v: it starts with the image's /data, owned by the node's user.
  const volumes = join(
    run('buildah', ['info', '--format', '{{.store.GraphRoot}}'], { quiet: true }).trim(),
    'overlay-containers',
    run('buildah', ['inspect', '--format', '{{.ContainerID}}', ctr], { quiet: true }).trim(),
    'userdata',
    'buildah-volumes',
  );
  let child: ChildProcess | undefined;
  let exited: Promise<number | null> | undefined;
  // Its own cluster name and queue on the shared Redis, removed afterwards.
  const cluster = `image-test-${process.pid}-${Date.now().toString(36)}`;
  try {
    checkContents(ctr);
    const names = ['ops', 'presence', 'dating-source', 'dating-listener', 'carts', 'who', 'events', 'cluster'] as const;
    const port = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await freePort()]))) as Record<(typeof names)[number], number>;
    const secret = randomUUID() + randomUUID();
    const env: Record<string, string> = {
      TROUPE_NODE_NAME: 'image-test',
      TROUPE_REDIS: REDIS_URL,
      // One node in a cluster of its own: the test is about the image, not the cluster port's TLS.
      TROUPE_INSECURE_CLUSTER: 'true',
      TROUPE_CLUSTER: cluster,
      TROUPE_EVENTS_QUEUE_NAME: cluster,
      TROUPE_ADVERTISE: `127.0.0.1:${port.cluster}`,
      TROUPE_OPS_PORT: String(port.ops),
      TROUPE_PRESENCE_PORT: String(port.presence),
      TROUPE_DATING_SOURCE_PORT: String(port['dating-source']),
      TROUPE_DATING_LISTENER_PORT: String(port['dating-listener']),
      TROUPE_CARTS_PORT: String(port.carts),
      TROUPE_CARTS_SECRET: secret,
      TROUPE_WHO_PORT: String(port.who),
      TROUPE_WHO_MAX_CONNECTIONS: '500',
      TROUPE_EVENTS_PORT: String(port.events),
      TROUPE_CLUSTER_PORT: String(port.cluster),
      TROUPE_SHARDS: '1',
      TROUPE_LOG_LEVEL: 'warn',
    };
    const command = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
    const runArgs = (cmd: string[]): string[] => [
      'run', '--isolation', 'chroot', '--network', 'host', '--user', config.User ?? '0',
      ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]), ctr, '--', ...cmd,
    ];
    const since = Date.now() - 1_000;
    log(`starting the image's entrypoint as ${config.User}: ${command.join(' ')}`);
    child = spawn('buildah', runArgs(command), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    exited = new Promise((resolve) => child!.once('exit', (code) => resolve(code)));
    const early = exited.then((code) => {
      throw new ImageCheckFailed(`the node exited (${code}) before it was ready:\n${output.slice(-4000)}`);
    });
    await Promise.race([until(`/readyz answers 200 (the node owns its partitions in cluster ${cluster})`, READY_WITHIN_MS, async () => (await fetch(`http://127.0.0.1:${port.ops}/readyz`)).status === 200), early]);
    early.catch(() => undefined);
    log(`ok: /readyz answers 200, a cluster node on ${REDIS_URL} (${((Date.now() - since) / 1000).toFixed(1)} s after start)`);

    const keys = await clusterKeyCount(cluster);
    check(keys > 0, `the node joined cluster ${cluster} in Redis (${keys} keys)`);

    const health = config.Healthcheck!.Test!.slice(1);
    execFileSync('buildah', runArgs(health), { stdio: 'ignore', timeout: 30_000 });
    log("ok: the image's HEALTHCHECK command passes inside the container");

    // presence: StatusReader counts the users online.
    const tenten = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath('tenten', 'service.proto'), { keepCase: false, longs: Number, defaults: true })) as any;
    const reader = new tenten.tenten.interview.StatusReader(`127.0.0.1:${port.presence}`, grpc.credentials.createInsecure());
    try {
      const reply = await unary(reader, 'FetchOnlineUsersInLast3Mins', {});
      check(typeof reply.onlineUsers === 'number', `presence StatusReader answers (${reply.onlineUsers} online)`);
    } finally {
      reader.close();
    }
    // dating: both of its ports take connections (a round needs a harness: troupe dating-harness).
    check((await tcpOpen(port['dating-source'])) && (await tcpOpen(port['dating-listener'])), 'dating Event Source and Event Listener ports are open');
    // carts: an authenticated Item/List with a token signed by the configured secret.
    const items = new (serviceOf('item', 'Item'))(`127.0.0.1:${port.carts}`, grpc.credentials.createInsecure());
    try {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${signToken(secret, randomUUID())}`);
      const listed = await unary(items, 'List', { request: { requested: 1, size: 10 } }, md);
      check(Array.isArray(listed.items), `carts Item/List answers with a token signed by TROUPE_CARTS_SECRET (${listed.items.length} items)`);
    } finally {
      items.close();
    }
    // who: one line back.
    const who = await whoAnswer(port.who);
    check(/\d/.test(who), `who answers WHO (${JSON.stringify(who)})`);
    // events: an event accepted, i.e. durable.
    const res = await fetch(`http://127.0.0.1:${port.events}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: randomUUID(), type: 'user_action', source: 'web', user_id: randomUUID(), data: { action: 'click' } }),
    });
    check(res.status === 202, `events POST /events answers 202 (got ${res.status} ${await res.text()})`);

    const pid = nodePid(child.pid!);
    check(pid, `found the node's process (${pid})`);
    const t0 = Date.now();
    process.kill(pid!, 'SIGTERM');
    const code = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), STOP_WITHIN_MS))]);
    check(code === 0, `SIGTERM: the node drained and exited 0 in ${((Date.now() - t0) / 1000).toFixed(1)} s (got ${code}${code === 0 ? '' : `; output:\n${output.slice(-3000)}`})`);
    child = undefined;
    const written = writesOutsideData(ctr, since);
    check(written.length === 0, `nothing written outside /data, so a read-only root filesystem holds${written.length ? ` (written: ${written.slice(0, 10).join(', ')})` : ''}`);
    const stored = readdirSync(volumes).flatMap((v) => readdirSync(join(volumes, v)));
    check(stored.length > 0, `the node's data landed in the /data volume (${stored.join(', ')})`);
  } finally {
    if (child && child.exitCode === null) {
      const pid = nodePid(child.pid!);
      if (pid) process.kill(pid, 'SIGKILL');
      child.kill('SIGKILL');
      await exited;
    }
    run('buildah', ['rm', ctr], { quiet: true });
    await dropClusterKeys(cluster, cluster);
  }
  const size = run('buildah', ['images', '--format', '{{.Size}}', IMAGE], { quiet: true }).trim();
  log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  process.stdout.write(`image ${IMAGE}: ${size}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`test:image FAILED: ${err instanceof ImageCheckFailed ? err.message : (err as Error).stack}\n`);
    process.exit(1);
  },
);
