// The Pulumi program under Pulumi's mocks (pulumi.runtime.setMocks): offline, no cluster, no
// engine, no plugin. Checks what it asks Kubernetes for: the namespace, Redis and PostgreSQL in it,
// the Secret the chart reads, and the chart's release with values its schema accepts.

import test from 'ava';
import * as pulumi from '@pulumi/pulumi';
import { Ajv } from 'ajv';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';

interface Registered {
  type: string;
  name: string;
  inputs: Record<string, any>;
}
const registered: Registered[] = [];

await pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs });
      return { id: `${args.name}-id`, state: { ...args.inputs, status: { name: args.inputs.name } } };
    },
    call: (args) => args.inputs,
  },
  'troupe',
  'test',
  false,
);

const { troupeStack, certificateFiles, CHART_PATH } = await import('../troupe-stack.js');

// What troupe certs issue writes for five pods of the release troupe, and the CA's certificate.
const certsDir = mkdtempSync(join(tmpdir(), 'troupe-iac-certs-'));
process.on('exit', () => rmSync(certsDir, { recursive: true, force: true }));
writeFileSync(join(certsDir, 'ca.pem'), 'CA CERT');
for (let n = 0; n < 5; n++) {
  writeFileSync(join(certsDir, `troupe-troupe-${n}.pem`), `CERT ${n}`);
  writeFileSync(join(certsDir, `troupe-troupe-${n}-key.pem`), `KEY ${n}`);
}

const resolve = <T>(o: pulumi.Input<T>): Promise<T> => new Promise((r) => pulumi.output(o).apply((v) => r(v as T)));

const stack = troupeStack({
  namespace: 'troupe-test',
  replicaCount: 5,
  imageRepository: 'registry.example.com/troupe',
  imageTag: '0.1.0',
  storageClass: 'fast-ssd',
  cartsSecret: pulumi.secret('c'.repeat(64)),
  redisPassword: pulumi.secret('redis-pw'),
  postgresPassword: pulumi.secret('pg-pw'),
  certsDir,
});

const byType = (type: string) => registered.filter((r) => r.type === type);

/** Maps merged key by key, everything else replaced: how helm merges given values over values.yaml. */
function deepMerge(base: any, over: any): any {
  if (!base || !over || typeof base !== 'object' || typeof over !== 'object' || Array.isArray(base) || Array.isArray(over)) return over === undefined ? base : over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

test('the namespace, and Redis and PostgreSQL in it with their volumes and probes', async (t) => {
  t.is(await resolve(stack.namespace.metadata.name), 'troupe-test');
  await resolve(stack.release.id);
  const sets = byType('kubernetes:apps/v1:StatefulSet');
  t.deepEqual(sets.map((s) => s.name).sort(), ['postgres', 'redis']);
  for (const s of sets) {
    t.is(s.inputs.metadata.namespace, 'troupe-test', `${s.name} in the namespace`);
    t.is(s.inputs.spec.volumeClaimTemplates[0].spec.storageClassName, 'fast-ssd');
    const c = s.inputs.spec.template.spec.containers[0];
    t.truthy(c.readinessProbe.exec.command.length, `${s.name} has a readiness probe`);
    t.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  }
  const redis = sets.find((s) => s.name === 'redis')!.inputs.spec.template.spec.containers[0];
  t.regex(redis.args.join(' '), /--appendonly yes .*--requirepass/, 'Redis keeps the changelog (AOF) behind a password');
  t.deepEqual(byType('kubernetes:core/v1:Service').map((s) => s.inputs.metadata.name).sort(), ['postgres', 'redis']);
});

test('the Secret the chart reads holds the carts secret and URLs with the passwords', async (t) => {
  await resolve(stack.secret.id);
  const secret = byType('kubernetes:core/v1:Secret').find((s) => s.name === 'troupe-secrets')!;
  t.truthy(secret);
  // Pulumi's marker of a secret value: the passwords never reach the state in plain text.
  const SECRET_SIG = '4dabf18193072939515e22adb298388d';
  t.truthy(secret.inputs.stringData[SECRET_SIG], 'stringData is a secret output');
  const data = secret.inputs.stringData.value;
  t.is(data['carts-secret'], 'c'.repeat(64));
  t.is(data['redis-url'], 'redis://:redis-pw@redis.troupe-test.svc:6379');
  t.is(data['postgres-url'], 'postgres://postgres:pg-pw@postgres.troupe-test.svc:5432/troupe');
});

test("the chart's release: this repository's chart, in the namespace, values its schema accepts", async (t) => {
  await resolve(stack.release.id);
  const [release] = byType('kubernetes:helm.sh/v3:Release');
  t.truthy(release);
  t.is(release!.inputs.chart, CHART_PATH);
  t.true(existsSync(join(CHART_PATH, 'Chart.yaml')), `${CHART_PATH} is the chart`);
  t.is(release!.inputs.namespace, 'troupe-test');
  const values = await resolve(stack.values);
  t.is(values.replicaCount, 5);
  t.is(values.secrets.existingSecret, 'troupe-secrets', 'the chart reads the Secret made here');
  // What helm would validate: the chart's values.yaml with these merged over it.
  const defaults = parse(readFileSync(join(CHART_PATH, 'values.yaml'), 'utf8')) as Record<string, any>;
  const merged = deepMerge(defaults, values);
  const validate = new Ajv({ strict: false, allErrors: true }).compile(JSON.parse(readFileSync(join(CHART_PATH, 'values.schema.json'), 'utf8')));
  t.true(validate(merged), JSON.stringify(validate.errors));
  t.false(validate({ ...merged, replicaCount: '5' }), 'the schema refuses a string replicaCount');
});

test('the cluster\'s certificates: a Secret from the directory, marked secret, given to the chart', async (t) => {
  await resolve(stack.release.id);
  const tls = byType('kubernetes:core/v1:Secret').find((s) => s.name === 'troupe-tls')!;
  t.truthy(tls, 'the troupe-tls Secret');
  t.is(tls.inputs.metadata.namespace, 'troupe-test');
  const SECRET_SIG = '4dabf18193072939515e22adb298388d';
  t.truthy(tls.inputs.stringData[SECRET_SIG], 'the keys are a secret output');
  const data = tls.inputs.stringData.value;
  t.deepEqual(Object.keys(data).sort(), ['ca.pem', ...[0, 1, 2, 3, 4].flatMap((n) => [`troupe-troupe-${n}-key.pem`, `troupe-troupe-${n}.pem`])].sort());
  t.is(data['troupe-troupe-3-key.pem'], 'KEY 3');
  const values = await resolve(stack.values);
  t.is(values.tls.existingSecret, 'troupe-tls');
  t.false(values.cluster.insecure, 'mutual TLS, not plaintext');
});

test('incomplete certificates or the CA key in the directory are refused, saying what to run', (t) => {
  t.throws(() => certificateFiles(certsDir, 6, 'prod'), { message: /missing troupe-troupe-5\.pem, troupe-troupe-5-key\.pem; troupe certs issue --ca CA_DIR --name troupe-troupe-5 --dns troupe-troupe-5\.troupe-troupe-nodes\.prod\.svc/ });
  const withKey = mkdtempSync(join(tmpdir(), 'troupe-iac-cakey-'));
  t.teardown(() => rmSync(withKey, { recursive: true, force: true }));
  writeFileSync(join(withKey, 'ca-key.pem'), 'CA KEY');
  t.throws(() => certificateFiles(withKey, 1, 'prod'), { message: /ca-key\.pem, the CA's key: keep it out of the cluster/ });
  t.throws(
    () => troupeStack({ namespace: 'x', replicaCount: 1, imageRepository: 'troupe', imageTag: '0.1.0', storageClass: '', cartsSecret: 'c'.repeat(40), redisPassword: 'r', postgresPassword: 'p' }),
    { message: /certsDir is required.*insecureCluster/ },
  );
});
