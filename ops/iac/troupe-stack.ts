// The Troupe deployment as Pulumi resources: a namespace, Redis (AOF, a password) and PostgreSQL
// as StatefulSets with their volumes, the Secrets the chart reads (carts secret and both URLs; the
// cluster's certificates from a directory `troupe certs` filled), and the chart ops/helm/troupe
// installed as a Helm release with its values.

import * as k8s from '@pulumi/kubernetes';
import * as pulumi from '@pulumi/pulumi';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** ops/helm/troupe, from dist/ or from the sources. */
export const CHART_PATH = join(dirname(fileURLToPath(import.meta.url)), ...(import.meta.url.includes('/dist/') ? ['..', '..'] : ['..']), 'helm', 'troupe');

export interface TroupeStackArgs {
  namespace: string;
  replicaCount: number;
  imageRepository: string;
  imageTag: string;
  /** Empty: the cluster's default storage class. */
  storageClass: string;
  cartsSecret: pulumi.Input<string>;
  redisPassword: pulumi.Input<string>;
  postgresPassword: pulumi.Input<string>;
  /**
   * A directory with ca.pem and, for every node, troupe-troupe-<n>.pem and troupe-troupe-<n>-key.pem
   * (`troupe certs issue --name troupe-troupe-<n>`): mutual TLS on the cluster port. Never the CA's
   * key. Required unless `insecureCluster`.
   */
  certsDir?: string;
  /** Plaintext on the cluster port (chart value cluster.insecure): a trial cluster only. */
  insecureCluster?: boolean;
  /** More chart values, merged over what this program sets. */
  values?: Record<string, unknown>;
}

export interface TroupeStack {
  namespace: k8s.core.v1.Namespace;
  redis: k8s.apps.v1.StatefulSet;
  postgres: k8s.apps.v1.StatefulSet;
  secret: k8s.core.v1.Secret;
  /** The cluster's certificates (none with insecureCluster). */
  tlsSecret?: k8s.core.v1.Secret;
  release: k8s.helm.v3.Release;
  /** What the chart is given, for checks and for the stack's outputs. */
  values: pulumi.Output<Record<string, any>>;
}

function claim(size: string, storageClass: string) {
  return {
    metadata: { name: 'data' },
    spec: {
      accessModes: ['ReadWriteOnce'],
      ...(storageClass ? { storageClassName: storageClass } : {}),
      resources: { requests: { storage: size } },
    },
  };
}

const hardened = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
};

/** A one-replica StatefulSet with a headless Service: a stable DNS name and its own volume. */
function database(
  name: string,
  ns: pulumi.Output<string>,
  spec: { image: string; port: number; uid: number; env: k8s.types.input.core.v1.EnvVar[]; args?: string[]; mountPath: string; probe: string[]; size: string; storageClass: string },
  opts: pulumi.CustomResourceOptions,
): { sts: k8s.apps.v1.StatefulSet; service: k8s.core.v1.Service } {
  const labels = { 'app.kubernetes.io/name': name, 'app.kubernetes.io/part-of': 'troupe' };
  const service = new k8s.core.v1.Service(
    name,
    { metadata: { name, namespace: ns, labels }, spec: { clusterIP: 'None', selector: labels, ports: [{ name, port: spec.port }] } },
    opts,
  );
  const sts = new k8s.apps.v1.StatefulSet(
    name,
    {
      metadata: { name, namespace: ns, labels },
      spec: {
        serviceName: name,
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            securityContext: { runAsNonRoot: true, runAsUser: spec.uid, fsGroup: spec.uid },
            containers: [
              {
                name,
                image: spec.image,
                args: spec.args,
                env: spec.env,
                ports: [{ name, containerPort: spec.port }],
                readinessProbe: { exec: { command: spec.probe }, periodSeconds: 5 },
                livenessProbe: { exec: { command: spec.probe }, periodSeconds: 10, failureThreshold: 6 },
                securityContext: hardened,
                resources: { requests: { cpu: '250m', memory: '256Mi' } },
                volumeMounts: [{ name: 'data', mountPath: spec.mountPath }],
              },
            ],
          },
        },
        volumeClaimTemplates: [claim(spec.size, spec.storageClass)],
      },
    },
    { ...opts, dependsOn: [service] },
  );
  return { sts, service };
}

/** The Helm release's name; with the chart's name it makes the pods' names, which are the node names. */
export const RELEASE_NAME = 'troupe';
const podName = (n: number) => `${RELEASE_NAME}-troupe-${n}`;

/**
 * The Secret data for the chart's tls.existingSecret: ca.pem and each pod's certificate and key.
 * Throws, naming the command to run, when a file is missing, and refuses a CA key in the directory.
 */
export function certificateFiles(dir: string, replicaCount: number, namespace: string): Record<string, string> {
  const files: Record<string, string> = {};
  const missing: string[] = [];
  const read = (name: string) => {
    const path = join(dir, name);
    if (existsSync(path)) files[name] = readFileSync(path, 'utf8');
    else missing.push(name);
  };
  if (existsSync(join(dir, 'ca-key.pem'))) {
    throw new Error(`${dir} holds ca-key.pem, the CA's key: keep it out of the cluster (troupe certs create-ca --out another directory, then copy ca.pem here)`);
  }
  read('ca.pem');
  for (let n = 0; n < replicaCount; n++) {
    read(`${podName(n)}.pem`);
    read(`${podName(n)}-key.pem`);
  }
  if (missing.length) {
    const pods = [...new Set(missing.filter((m) => m !== 'ca.pem').map((m) => m.replace(/(-key)?\.pem$/, '')))];
    const how = pods.map((p) => `troupe certs issue --ca CA_DIR --name ${p} --dns ${p}.${RELEASE_NAME}-troupe-nodes.${namespace}.svc --out ${dir}`);
    throw new Error(`the certificates in ${dir} are incomplete: missing ${missing.join(', ')}; ${missing.includes('ca.pem') ? 'copy CA_DIR/ca.pem there; ' : ''}${how.join('; ')}`);
  }
  return files;
}

export function troupeStack(args: TroupeStackArgs, opts: pulumi.CustomResourceOptions = {}): TroupeStack {
  // Checked before any resource is made: a missing certificate stops the program, not the pods.
  if (!args.insecureCluster && !args.certsDir) throw new Error('certsDir is required: a directory of troupe certs output (ops/README.md), or set insecureCluster for a plaintext trial');
  const certificates = args.insecureCluster ? undefined : certificateFiles(args.certsDir!, args.replicaCount, args.namespace);
  const namespace = new k8s.core.v1.Namespace('troupe', { metadata: { name: args.namespace } }, opts);
  const ns = namespace.metadata.name;
  const inNs = { ...opts, dependsOn: [namespace] };

  const dbSecret = new k8s.core.v1.Secret(
    'troupe-databases',
    { metadata: { name: 'troupe-databases', namespace: ns }, stringData: { 'redis-password': args.redisPassword, 'postgres-password': args.postgresPassword } },
    inNs,
  );
  const fromDbSecret = (key: string) => ({ secretKeyRef: { name: 'troupe-databases', key } });

  // Redis holds the partition changelog (every durable actor's last state): AOF, fsync every second.
  const redis = database(
    'redis',
    ns,
    {
      image: 'redis:7',
      port: 6379,
      uid: 999,
      env: [{ name: 'REDISCLI_AUTH', valueFrom: fromDbSecret('redis-password') }],
      args: ['sh', '-c', 'exec redis-server --appendonly yes --appendfsync everysec --requirepass "$REDISCLI_AUTH"'],
      mountPath: '/data',
      probe: ['redis-cli', 'ping'],
      size: '5Gi',
      storageClass: args.storageClass,
    },
    { ...inNs, dependsOn: [namespace, dbSecret] },
  );
  const postgres = database(
    'postgres',
    ns,
    {
      image: 'postgres:15',
      port: 5432,
      uid: 999,
      env: [
        { name: 'POSTGRES_USER', value: 'postgres' },
        { name: 'POSTGRES_DB', value: 'troupe' },
        { name: 'POSTGRES_PASSWORD', valueFrom: fromDbSecret('postgres-password') },
        { name: 'PGDATA', value: '/var/lib/postgresql/data/pgdata' },
      ],
      mountPath: '/var/lib/postgresql/data',
      probe: ['pg_isready', '-U', 'postgres', '-d', 'troupe'],
      size: '20Gi',
      storageClass: args.storageClass,
    },
    { ...inNs, dependsOn: [namespace, dbSecret] },
  );

  // The Secret the chart reads by name (secrets.existingSecret): the URLs carry the passwords.
  const secret = new k8s.core.v1.Secret(
    'troupe-secrets',
    {
      metadata: { name: 'troupe-secrets', namespace: ns },
      stringData: {
        'carts-secret': args.cartsSecret,
        'redis-url': pulumi.interpolate`redis://:${args.redisPassword}@redis.${ns}.svc:6379`,
        'postgres-url': pulumi.interpolate`postgres://postgres:${args.postgresPassword}@postgres.${ns}.svc:5432/troupe`,
      },
    },
    inNs,
  );

  // The cluster's certificates, from files: marked secret, so the keys never reach the state in clear.
  let tlsSecret: k8s.core.v1.Secret | undefined;
  if (certificates) {
    tlsSecret = new k8s.core.v1.Secret(
      'troupe-tls',
      { metadata: { name: 'troupe-tls', namespace: ns }, stringData: pulumi.secret(certificates) },
      inNs,
    );
  }

  const values: pulumi.Output<Record<string, any>> = pulumi.output<Record<string, any>>({
    replicaCount: args.replicaCount,
    // Merged by helm over the chart's cluster values (name, port, inspector read-only).
    cluster: { insecure: Boolean(args.insecureCluster) },
    tls: { existingSecret: tlsSecret ? 'troupe-tls' : '' },
    image: { repository: args.imageRepository, tag: args.imageTag, pullPolicy: 'IfNotPresent' },
    secrets: { existingSecret: 'troupe-secrets', cartsSecret: '' },
    persistence: { enabled: true, size: '10Gi', storageClass: args.storageClass, accessModes: ['ReadWriteOnce'] },
    ...(args.values ?? {}),
  });
  const release = new k8s.helm.v3.Release(
    'troupe',
    {
      name: RELEASE_NAME,
      chart: CHART_PATH,
      namespace: ns,
      values,
      // The nodes become ready only once Redis answers: let the release wait for them.
      waitForJobs: true,
      timeout: 600,
    },
    { ...opts, dependsOn: [secret, ...(tlsSecret ? [tlsSecret] : []), redis.sts, postgres.sts] },
  );
  return { namespace, redis: redis.sts, postgres: postgres.sts, secret, tlsSecret, release, values };
}
