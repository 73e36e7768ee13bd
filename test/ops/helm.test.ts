// ops/helm/troupe checked offline: values.yaml against values.schema.json (a wrong type refused),
// every .Values path a template reads exists in values.yaml, and the manifests rendered (by
// test/ops/helm-render.ts, helm being unavailable here) for the default and the production values
// are valid Kubernetes objects by kubernetes-models' schemas.

import test from 'ava';
import { Ajv } from 'ajv';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { projectRoot } from '../../runtime/index.js';
import { ChartRenderer, loadYaml, mergeValues } from './helm-render.js';

const CHART = join(projectRoot(), 'ops', 'helm', 'troupe');
type Obj = Record<string, any>;

function schemaValidator() {
  const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'));
  return new Ajv({ allErrors: true, strict: false }).compile(schema);
}

const defaults = (): Obj => loadYaml(join(CHART, 'values.yaml')) as Obj;
/** values.yaml with the one value it leaves for the user to give: the cluster's certificates. */
const withTls = (more: Obj = {}): Obj => mergeValues(defaults(), mergeValues({ tls: { existingSecret: 'troupe-tls' } }, more)) as Obj;
const production = (): Obj => mergeValues(defaults(), loadYaml(join(CHART, 'values-production.yaml'))) as Obj;

function manifests(values: Obj): Obj[] {
  const chart = loadYaml(join(CHART, 'Chart.yaml')) as Obj;
  const renderer = new ChartRenderer(CHART);
  const out: Obj[] = [];
  for (const [file, text] of renderer.render({
    Values: values,
    Release: { Name: 'troupe', Namespace: 'troupe', Service: 'Helm' },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
  })) {
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length) throw new Error(`${file}: not YAML: ${doc.errors[0]!.message}\n${text}`);
      const obj = doc.toJS() as Obj | null;
      if (obj) out.push({ ...obj, __file: file });
    }
  }
  return out;
}

const MODELS: Record<string, () => Promise<any>> = {
  'apps/v1/StatefulSet': async () => (await import('kubernetes-models/apps/v1/StatefulSet')).StatefulSet,
  'v1/Service': async () => (await import('kubernetes-models/v1/Service')).Service,
  'v1/ConfigMap': async () => (await import('kubernetes-models/v1/ConfigMap')).ConfigMap,
  'v1/Secret': async () => (await import('kubernetes-models/v1/Secret')).Secret,
  'policy/v1/PodDisruptionBudget': async () => (await import('kubernetes-models/policy/v1/PodDisruptionBudget')).PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': async () => (await import('kubernetes-models/networking.k8s.io/v1/NetworkPolicy')).NetworkPolicy,
};

async function validateObjects(t: import('ava').ExecutionContext, objs: Obj[]): Promise<void> {
  for (const { __file, ...obj } of objs) {
    const key = `${obj.apiVersion}/${obj.kind}`;
    if (key === 'monitoring.coreos.com/v1/ServiceMonitor') {
      // A CRD kubernetes-models does not carry: its required shape by hand.
      t.truthy(obj.spec?.selector?.matchLabels && obj.spec.endpoints?.[0]?.port, `${__file}: ServiceMonitor selector and endpoint`);
      continue;
    }
    const model = MODELS[key];
    t.truthy(model, `${__file}: ${key} has a schema here`);
    if (!model) continue;
    const Model = await model();
    t.notThrows(() => new Model(obj).validate(), `${__file}: ${obj.kind} ${obj.metadata?.name} is a valid ${key}`);
  }
}

test('values.yaml satisfies values.schema.json; a wrong type is refused', (t) => {
  const validate = schemaValidator();
  t.true(validate(defaults()), JSON.stringify(validate.errors));
  t.true(validate(production()), JSON.stringify(validate.errors));
  t.false(validate({ ...defaults(), replicaCount: '3' }), 'a string replicaCount');
  t.false(validate({ ...defaults(), replicaCount: 0 }), 'no nodes');
  t.false(validate({ ...defaults(), gateways: { ...defaults().gateways, enabled: ['chat'] } }), 'an unknown gateway');
  t.false(validate({ ...defaults(), replicas: 3 }), 'a misspelt key');
  t.false(validate({ ...defaults(), terminationGracePeriodSeconds: 10 }), 'a grace period shorter than the drain');
  t.false(validate({ ...defaults(), cluster: { ...defaults().cluster, insecure: 'yes' } }), 'a string cluster.insecure');
  t.false(validate({ ...defaults(), tls: { enabled: true, existingSecret: 'troupe-tls' } }), 'the old tls.enabled (TLS is on unless cluster.insecure)');
});

test('every .Values path a template reads exists in values.yaml', (t) => {
  const values = defaults();
  const renderer = new ChartRenderer(CHART);
  t.true(renderer.valuesPaths.size > 20, `found ${renderer.valuesPaths.size} paths`);
  const missing = [...renderer.valuesPaths].filter((path) => {
    let v: unknown = values;
    for (const key of path.split('.')) {
      if (!v || typeof v !== 'object' || !(key in v)) return true;
      v = (v as Obj)[key];
    }
    return false;
  });
  t.deepEqual(missing, []);
});

test('the default values give valid Kubernetes objects: StatefulSet, headless Service, a Service per gateway, PDB, NetworkPolicy', async (t) => {
  const objs = manifests(withTls());
  await validateObjects(t, objs);
  const kinds = objs.map((o) => `${o.kind}/${o.metadata.name}`);
  for (const k of [
    'StatefulSet/troupe-troupe',
    'Service/troupe-troupe-nodes',
    'Service/troupe-troupe-presence',
    'Service/troupe-troupe-dating',
    'Service/troupe-troupe-carts',
    'Service/troupe-troupe-who',
    'Service/troupe-troupe-events',
    'ConfigMap/troupe-troupe',
    'PodDisruptionBudget/troupe-troupe',
    'NetworkPolicy/troupe-troupe',
  ])
    t.true(kinds.includes(k), k);
  t.false(kinds.some((k) => k.startsWith('ServiceMonitor/')), 'no ServiceMonitor unless asked');

  const sts = objs.find((o) => o.kind === 'StatefulSet')!;
  t.is(sts.spec.replicas, 3);
  t.is(sts.spec.serviceName, 'troupe-troupe-nodes');
  const pod = sts.spec.template.spec;
  const c = pod.containers[0];
  const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e.value ?? e.valueFrom]));
  t.is(env.TROUPE_ADVERTISE, '$(POD_NAME).troupe-troupe-nodes.$(POD_NAMESPACE).svc:7070', 'each pod advertises its pod DNS name');
  t.is(env.TROUPE_NODE_NAME, '$(POD_NAME)');
  t.is(c.readinessProbe.httpGet.path, '/readyz');
  t.is(c.livenessProbe.httpGet.path, '/healthz');
  t.truthy(c.lifecycle.preStop.exec.command);
  t.true(pod.terminationGracePeriodSeconds > 30, 'the grace period covers the events drain');
  t.true(pod.securityContext.runAsNonRoot);
  t.true(c.securityContext.readOnlyRootFilesystem);
  t.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  t.truthy(c.resources.requests.cpu);
  const np = objs.find((o) => o.kind === 'NetworkPolicy')!;
  const clusterRule = np.spec.ingress.find((r: Obj) => r.ports.some((p: Obj) => p.port === 7070));
  t.deepEqual(clusterRule.from[0].podSelector.matchLabels, sts.spec.selector.matchLabels, 'only peers reach the cluster port');
  t.false(np.spec.ingress.some((r: Obj) => !r.from && r.ports.some((p: Obj) => p.port === 7070)), 'no open rule for the cluster port');
});

test('the production values give valid Kubernetes objects, secrets by reference', async (t) => {
  const objs = manifests(production());
  await validateObjects(t, objs);
  t.true(objs.some((o) => o.kind === 'ServiceMonitor'), 'ServiceMonitor when enabled');
  t.false(objs.some((o) => o.kind === 'Secret'), 'an existing Secret is used, none made');
  const sts = objs.find((o) => o.kind === 'StatefulSet')!;
  t.is(sts.spec.replicas, 5);
  const c = sts.spec.template.spec.containers[0];
  const byName = Object.fromEntries(c.env.map((e: Obj) => [e.name, e]));
  for (const [name, key] of [['TROUPE_REDIS', 'redis-url'], ['TROUPE_POSTGRES', 'postgres-url']] as const)
    t.deepEqual(byName[name].valueFrom.secretKeyRef, { name: 'troupe-secrets', key }, name);
  t.is(byName.TROUPE_CARTS_SECRET, undefined, 'the carts secret is no variable');
  t.is(byName.TROUPE_CARTS_SECRET_FILE.value, '/etc/troupe/secrets/carts-secret');
  const volumes = Object.fromEntries(sts.spec.template.spec.volumes.map((v: Obj) => [v.name, v]));
  t.deepEqual(volumes.secrets.secret.items, [{ key: 'carts-secret', path: 'carts-secret' }], 'only the carts secret is mounted, not the URLs');
  t.is(volumes.secrets.secret.secretName, 'troupe-secrets');
  t.is(volumes.tls.secret.secretName, 'troupe-tls');
  t.true(c.volumeMounts.some((m: Obj) => m.mountPath === '/etc/troupe/tls' && m.readOnly), 'TLS certificates mounted read-only');
  const cm = objs.find((o) => o.kind === 'ConfigMap')!;
  t.is(cm.data.TROUPE_DURABILITY, 'full');
  t.is(cm.data.TROUPE_INSPECTOR, 'off');
});

test('the Kubernetes check is not vacuous: a wrongly typed field is refused', async (t) => {
  const sts = manifests(withTls()).find((o) => o.kind === 'StatefulSet')!;
  delete sts.__file;
  const Model = await MODELS['apps/v1/StatefulSet']!();
  t.notThrows(() => new Model(structuredClone(sts)).validate());
  const broken = structuredClone(sts);
  broken.spec.template.spec.containers[0].ports[0].containerPort = '7070';
  t.throws(() => new Model(broken).validate(), { message: /containerPort must be integer/ });
});

const envOf = (c: Obj): Record<string, Obj> => Object.fromEntries(c.env.map((e: Obj) => [e.name, e]));

test('mutual TLS on the cluster port: each pod names its own certificate from the mounted Secret', (t) => {
  const sts = manifests(withTls()).find((o) => o.kind === 'StatefulSet')!;
  const pod = sts.spec.template.spec;
  const c = pod.containers[0];
  const env = envOf(c);
  t.is(env.TROUPE_TLS_CA!.value, '/etc/troupe/tls/ca.pem');
  // The node name is the pod name ($(POD_NAME), defined before), and the certificate names it.
  t.is(env.TROUPE_NODE_NAME!.value, '$(POD_NAME)');
  t.is(env.TROUPE_TLS_CERT!.value, '/etc/troupe/tls/$(POD_NAME).pem');
  t.is(env.TROUPE_TLS_KEY!.value, '/etc/troupe/tls/$(POD_NAME)-key.pem');
  const names = c.env.map((e: Obj) => e.name);
  t.true(names.indexOf('POD_NAME') < names.indexOf('TROUPE_TLS_CERT'), 'POD_NAME is defined before it is used');
  t.false('TROUPE_INSECURE_CLUSTER' in env, 'not plaintext unless asked');
  t.deepEqual(c.volumeMounts.find((m: Obj) => m.name === 'tls'), { name: 'tls', mountPath: '/etc/troupe/tls', readOnly: true });
  const tls = pod.volumes.find((v: Obj) => v.name === 'tls');
  t.is(tls.secret.secretName, 'troupe-tls');
  t.is(tls.secret.defaultMode, 0o440, 'readable by the pod group, writable by none');
  t.false(c.volumeMounts.some((m: Obj) => m.name === 'tls' && m.subPath), 'no subPath: the files follow the Secret (rotation)');
  const cm = manifests(withTls()).find((o) => o.kind === 'ConfigMap')!;
  t.is(cm.data.TROUPE_INSPECTOR, 'read-only', 'the inspector is read-only');
});

test('without certificates the chart refuses to render, naming what to give; plaintext only when asked', async (t) => {
  t.throws(() => manifests(defaults()), { message: /tls\.existingSecret is required.*troupe certs.*cluster\.insecure=true/ });
  const objs = manifests(mergeValues(defaults(), { cluster: { insecure: true } }) as Obj);
  await validateObjects(t, objs);
  const pod = objs.find((o) => o.kind === 'StatefulSet')!.spec.template.spec;
  const env = envOf(pod.containers[0]);
  t.is(env.TROUPE_INSECURE_CLUSTER!.value, 'true');
  t.false('TROUPE_TLS_CERT' in env || 'TROUPE_TLS_CA' in env);
  t.false(pod.volumes.some((v: Obj) => v.name === 'tls'), 'no certificates mounted');
});

test('the carts secret reaches the nodes as a file; a cluster without one is refused', async (t) => {
  const values = withTls({ redis: { url: 'redis://:pw@redis:6379' }, secrets: { cartsSecret: 's'.repeat(40) } });
  const objs = manifests(values);
  await validateObjects(t, objs);
  const secret = objs.find((o) => o.kind === 'Secret')!;
  t.is(Buffer.from(secret.data['carts-secret'], 'base64').toString(), 's'.repeat(40));
  const pod = objs.find((o) => o.kind === 'StatefulSet')!.spec.template.spec;
  const c = pod.containers[0];
  const env = envOf(c);
  t.is(env.TROUPE_CARTS_SECRET_FILE!.value, '/etc/troupe/secrets/carts-secret');
  t.false('TROUPE_CARTS_SECRET' in env);
  t.deepEqual(c.volumeMounts.find((m: Obj) => m.name === 'secrets'), { name: 'secrets', mountPath: '/etc/troupe/secrets', readOnly: true });
  const vol = pod.volumes.find((v: Obj) => v.name === 'secrets');
  t.deepEqual(vol.secret, { secretName: 'troupe-troupe', defaultMode: 0o440, items: [{ key: 'carts-secret', path: 'carts-secret' }] });
  t.throws(() => manifests(withTls({ redis: { url: 'redis://:pw@redis:6379' } })), { message: /needs one carts secret.*secrets\.cartsSecret/ });
  const validate = schemaValidator();
  t.false(validate(mergeValues(defaults(), { secrets: { cartsSecret: 'short' } })), 'a carts secret under 32 characters');
});

test('the renderer refuses what it does not know instead of guessing', (t) => {
  const r = new ChartRenderer(CHART) as any;
  t.throws(() => r.pipeline('lookup "v1" "Secret" "ns" "x"', { dot: {}, root: {}, vars: {} }, 'probe'), { message: /not supported/ });
});
