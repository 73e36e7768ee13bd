// The carts gateway: the Sedeo Cart and Item gRPC services on `carts-port`, with items in
// PostgreSQL (or SQLite when embedded) and one actor `cart/<uuid>` per cart.

import { catalogueOptionsFromSettings, openCatalogue } from '../../actors/catalogue.js';
import { CartClient } from '../../actors/cart-client.js';
import { GRPC_LIMIT_SETTINGS, grpcLimitsFrom } from '../../runtime/grpc-limits.js';
import type { Gateway, GatewayHost, RunningGateway, SettingSpec } from '../../runtime/index.js';
import { publicTlsFrom, publicTlsSettings } from '../public-tls.js';
import { cartsSecretFrom, signToken } from './auth.js';
import { startCartsServer } from './server.js';

export const CARTS_SETTINGS: readonly SettingSpec[] = [
  { name: 'carts-port', kind: 'port', default: 9111, description: 'gRPC port of the Cart and Item services' },
  {
    name: 'postgres',
    kind: 'url',
    default: undefined,
    example: 'postgres://postgres@127.0.0.1:5432/test',
    description: 'PostgreSQL URL (postgres://user:pass@host:5432/db) for items and carts; without it they live in SQLite in the data dir',
  },
  { name: 'carts-schema', kind: 'string', default: 'public', description: 'PostgreSQL schema of the item, cart and cart_entry tables (created when missing)' },
  {
    name: 'carts-secret-file',
    kind: 'string',
    default: undefined,
    description:
      'file holding the HMAC secret (at least 32 bytes) that signs the carts bearer tokens; required in a cluster, the same on every node; alone without it a development secret is kept in the data dir',
  },
  {
    name: 'carts-secret',
    kind: 'string',
    default: undefined,
    description: 'the carts secret itself (at least 32 bytes); a flag shows in `ps`: prefer --carts-secret-file',
  },
  ...publicTlsSettings('carts', 'the carts gRPC port'),
  ...GRPC_LIMIT_SETTINGS,
  { name: 'carts-pool-size', kind: 'int', default: 4, min: 1, max: 64, description: 'PostgreSQL connections per shard and on the main thread' },
];

const CART_ACTOR = new URL('../../actors/cart.js', import.meta.url).href;

/** The user the development token printed at start names. */
export const DEVELOPMENT_USER = '00000000-0000-4000-8000-000000000001';

export async function startCarts(host: GatewayHost): Promise<RunningGateway> {
  const log = host.log.child({ gateway: 'carts' });
  // Settings first: a node refused for its secret or its TLS files opens no store.
  const { secret, development, warnings } = cartsSecretFrom(host.settings, host.dataDir);
  const tls = publicTlsFrom(host.settings, 'carts');
  for (const w of warnings) log.warn(`carts: ${w}`);
  if (tls?.warning) log.warn(`carts: ${tls.warning}`);
  const store = await openCatalogue(catalogueOptionsFromSettings(host.settings, host.dataDir));
  try {
    const applied = await store.migrate();
    if (applied.length) log.info({ applied, store: store.kind }, 'carts schema migrated');
  } catch (err) {
    await store.close();
    throw err;
  }
  const carts = new CartClient(host.system);
  const port = host.settings['carts-port'] as number;
  let server;
  try {
    server = await startCartsServer(`${host.host}:${port}`, { store, carts, secret, log, metrics: host.metrics, tls, limits: grpcLimitsFrom(host.settings) });
  } catch (err) {
    await store.close();
    throw new Error(`carts gateway cannot listen on ${host.host}:${port}: ${(err as Error).message}; choose another --carts-port`);
  }
  if (development) {
    // A user token only: an admin token in a log would be an admin credential for whoever reads it.
    log.warn(
      { user: DEVELOPMENT_USER, token: signToken(secret, DEVELOPMENT_USER, { ttlSeconds: 30 * 24 * 3600 }) },
      `carts: no --carts-secret-file set, using a development secret from the data dir (this node only); a user token (30 days) follows, use \`authorization: Bearer <token>\`; an admin token: \`troupe carts-token --admin --data-dir ${host.dataDir}\``,
    );
  }
  log.info({ port: server.port, store: store.kind, tls: tls !== undefined }, `carts gateway listening${tls ? ' (TLS)' : ''}`);
  return {
    ports: { grpc: server.port },
    async panel() {
      // The same counter /metrics shows (troupe_carts_rpc_total), by method; errors are non-OK codes.
      const rpc = await host.metrics.getSingleMetric('troupe_carts_rpc_total')?.get();
      const byMethod = new Map<string, number>();
      let errors = 0;
      for (const v of rpc?.values ?? []) {
        const method = String(v.labels.method ?? '?');
        byMethod.set(method, (byMethod.get(method) ?? 0) + v.value);
        if (v.labels.code !== 'OK') errors += v.value;
      }
      return [
        ...[...byMethod].sort(([a], [b]) => a.localeCompare(b)).map(([method, n]) => ({ name: `calls ${method}`, value: n, kind: 'count' as const })),
        { name: 'errors', value: errors, kind: 'count' as const },
      ];
    },
    async notReady() {
      try {
        await store.getItem('00000000-0000-0000-0000-000000000000');
        return undefined;
      } catch (err) {
        return `carts store ${store.kind} does not answer: ${(err as Error).message}`;
      }
    },
    async stop() {
      await server.stop();
      await store.close();
    },
  };
}

export const cartsGateway: Gateway = {
  name: 'carts',
  actorModules: [CART_ACTOR],
  settings: CARTS_SETTINGS,
  start: startCarts,
};
