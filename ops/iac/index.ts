// The Pulumi program (`pulumi up` in ops/iac after `npm ci && npm run build`): reads the stack's
// configuration (Pulumi.example.yaml) and creates the Troupe deployment.

import * as pulumi from '@pulumi/pulumi';
import { troupeStack } from './troupe-stack.js';

const config = new pulumi.Config('troupe');
const stack = troupeStack({
  namespace: config.get('namespace') ?? 'troupe',
  replicaCount: config.getNumber('replicaCount') ?? 3,
  imageRepository: config.get('imageRepository') ?? 'troupe',
  imageTag: config.get('imageTag') ?? '0.1.0',
  storageClass: config.get('storageClass') ?? '',
  cartsSecret: config.requireSecret('cartsSecret'),
  redisPassword: config.requireSecret('redisPassword'),
  postgresPassword: config.requireSecret('postgresPassword'),
  // ca.pem and troupe-troupe-<n>.pem / -key.pem for every node (ops/README.md).
  certsDir: config.get('certsDir') ?? 'certs',
  insecureCluster: config.getBoolean('insecureCluster') ?? false,
});

export const namespace = stack.namespace.metadata.name;
export const release = stack.release.status.name;
