// The Troupe deployment as Pulumi resources: a namespace, Redis (AOF, a password) and PostgreSQL
// as StatefulSets with their volumes, the Secret the chart reads (carts secret, both URLs), and the
// chart ops/helm/troupe installed as a Helm release with its values.

import * as k8s from '@pulumi/kubernetes';
import * as pulumi from '@pulumi/pulumi';
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
  /** More chart values, merged over what this program sets. */
  values?: Record<string, unknown>;
}

export interface TroupeStack {
  namespace: k8s.core.v1.Namespace;
  redis: k8s.apps.v1.StatefulSet;
  postgres: k8s.apps.v1.StatefulSet;
  secret: k8s.core.v1.Secret;
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

export function troupeStack(args: TroupeStackArgs, opts: pulumi.CustomResourceOptions = {}): TroupeStack {
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

  const values: pulumi.Output<Record<string, any>> = pulumi.output<Record<string, any>>({
    replicaCount: args.replicaCount,
    image: { repository: args.imageRepository, tag: args.imageTag, pullPolicy: 'IfNotPresent' },
    secrets: { existingSecret: 'troupe-secrets', cartsSecret: '' },
    persistence: { enabled: true, size: '10Gi', storageClass: args.storageClass, accessModes: ['ReadWriteOnce'] },
    ...(args.values ?? {}),
  });
  const release = new k8s.helm.v3.Release(
    'troupe',
    {
      name: 'troupe',
      chart: CHART_PATH,
      namespace: ns,
      values,
      // The nodes become ready only once Redis answers: let the release wait for them.
      waitForJobs: true,
      timeout: 600,
    },
    { ...opts, dependsOn: [secret, redis.sts, postgres.sts] },
  );
  return { namespace, redis: redis.sts, postgres: postgres.sts, secret, release, values };
}
