// Test harness for the carts gateway: a real node (one shard), the gateway on port 0, typed-ish
// promise clients, tokens, and a store per run (its own PostgreSQL schema, or a temp SQLite dir).

import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Registry } from 'prom-client';
import { cartsGateway } from '../../../gateways/carts/index.js';
import { signToken } from '../../../gateways/carts/auth.js';
import { serviceOf } from '../../../gateways/carts/protos.js';
import { rootLogger, startNode, type RunningGateway, type TroupeNode } from '../../../runtime/index.js';

export const PG_URL = process.env.TROUPE_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
export const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';

export type Backend = 'postgres' | 'sqlite';

export type Call = (method: string, request: unknown, token?: string | null) => Promise<any>;

export interface CartsFixture {
  backend: Backend;
  node: TroupeNode;
  gateway: RunningGateway;
  port: number;
  cart: Call;
  item: Call;
  admin: string;
  alice: string;
  bob: string;
  aliceId: string;
  bobId: string;
  schema: string;
  dataDir: string;
  /** Stops the gateway and the node and starts them again on the same store. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

function caller(client: grpc.Client): Call {
  return (method, request, token) =>
    new Promise((resolve, reject) => {
      const md = new grpc.Metadata();
      if (token) md.set('authorization', `Bearer ${token}`);
      (client as any)[method](request, md, { deadline: Date.now() + 20_000 }, (err: grpc.ServiceError | null, reply: unknown) =>
        err ? reject(err) : resolve(reply),
      );
    });
}

export async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}

export function newSchema(): string {
  return `carts_test_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
}

async function boot(dataDir: string, settings: Record<string, unknown>, shards: number) {
  const log = rootLogger().child({ test: 'carts' });
  const node = await startNode({ dataDir, actorModules: cartsGateway.actorModules, shards, settings, log });
  let gateway: RunningGateway;
  try {
    gateway = await cartsGateway.start({
      system: node,
      membership: node.membership,
      settings: settings as any,
      metrics: new Registry(),
      log,
      dataDir,
      host: '127.0.0.1',
    });
  } catch (err) {
    await node.stop();
    throw err;
  }
  const port = gateway.ports['grpc']!;
  const cartClient = new (serviceOf('cart', 'Cart'))(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const itemClient = new (serviceOf('item', 'Item'))(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    node,
    gateway,
    port,
    cart: caller(cartClient),
    item: caller(itemClient),
    async stop() {
      cartClient.close();
      itemClient.close();
      await gateway.stop();
      await node.stop();
    },
  };
}

export async function startCartsFixture(backend: Backend, options: { shards?: number; extra?: Record<string, unknown> } = {}): Promise<CartsFixture> {
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-carts-'));
  const schema = newSchema();
  const shards = options.shards ?? 1;
  const settings: Record<string, unknown> = {
    'carts-port': 0,
    'carts-schema': schema,
    'carts-secret': SECRET,
    'carts-pool-size': 3,
    postgres: backend === 'postgres' ? PG_URL : undefined,
    ...options.extra,
  };
  let running = await boot(dataDir, settings, shards);
  const aliceId = randomUUID();
  const bobId = randomUUID();
  const fixture: CartsFixture = {
    backend,
    node: running.node,
    gateway: running.gateway,
    port: running.port,
    cart: (m, r, t) => running.cart(m, r, t),
    item: (m, r, t) => running.item(m, r, t),
    admin: signToken(SECRET, randomUUID(), { roles: ['admin'] }),
    alice: signToken(SECRET, aliceId),
    bob: signToken(SECRET, bobId),
    aliceId,
    bobId,
    schema,
    dataDir,
    async restart() {
      await running.stop();
      running = await boot(dataDir, settings, shards);
      fixture.node = running.node;
      fixture.gateway = running.gateway;
      fixture.port = running.port;
    },
    async close() {
      await running.stop();
      if (backend === 'postgres') await dropSchema(schema);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return fixture;
}
