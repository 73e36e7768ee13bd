// The carts gateway: the Sedeo Cart and Item gRPC services on `carts-port`, with items in
// PostgreSQL (or SQLite when embedded) and one actor `cart/<uuid>` per cart.

import { catalogueOptionsFromSettings, openCatalogue } from '../../actors/catalogue.js';
import { CartClient } from '../../actors/cart-client.js';
import type { Gateway, GatewayHost, RunningGateway, SettingSpec } from '../../runtime/index.js';
import { resolveSecret, signToken } from './auth.js';
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
    name: 'carts-secret',
    kind: 'string',
    default: undefined,
    description: 'HMAC secret that signs the carts bearer tokens; without it a development secret is kept in the data dir and tokens are printed at start',
  },
  { name: 'carts-pool-size', kind: 'int', default: 4, min: 1, max: 64, description: 'PostgreSQL connections per shard and on the main thread' },
];

const CART_ACTOR = new URL('../../actors/cart.js', import.meta.url).href;

export async function startCarts(host: GatewayHost): Promise<RunningGateway> {
  const log = host.log.child({ gateway: 'carts' });
  const store = await openCatalogue(catalogueOptionsFromSettings(host.settings, host.dataDir));
  try {
    const applied = await store.migrate();
    if (applied.length) log.info({ applied, store: store.kind }, 'carts schema migrated');
  } catch (err) {
    await store.close();
    throw err;
  }
  const { secret, development } = resolveSecret(host.settings['carts-secret'], host.dataDir);
  const carts = new CartClient(host.system);
  const port = host.settings['carts-port'] as number;
  let server;
  try {
    server = await startCartsServer(`${host.host}:${port}`, { store, carts, secret, log, metrics: host.metrics });
  } catch (err) {
    await store.close();
    throw new Error(`carts gateway cannot listen on ${host.host}:${port}: ${(err as Error).message}; choose another --carts-port`);
  }
  if (development) {
    const user = '00000000-0000-4000-8000-000000000001';
    const ttlSeconds = 30 * 24 * 3600;
    log.warn(
      {
        user,
        token: signToken(secret, user, { ttlSeconds }),
        adminToken: signToken(secret, user, { roles: ['admin'], ttlSeconds }),
      },
      'carts: no --carts-secret set, using a development secret from the data dir; development tokens (30 days) follow, use `authorization: Bearer <token>`',
    );
  }
  log.info({ port: server.port, store: store.kind }, 'carts gateway listening');
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
