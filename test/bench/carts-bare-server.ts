// The carts bench's baseline server: Cart/AddItem and Cart/Get on a bare grpc-js server in the
// bench's own main thread, with no actors, no batching and no tokens. AddItem is one autocommitted
// single-row upsert through `pg`, then the cart is answered from an in-memory Map; Get answers from
// that Map. It is the plain way of serving the same calls on the same machine, so that the gateway's
// Get latency under load is read beside it rather than alone.

import * as grpc from '@grpc/grpc-js';
import type pg from 'pg';
import { serviceOf } from '../../gateways/carts/protos.js';
import { shutdownGrpcServer } from '../../runtime/index.js';

export interface BareItem {
  uuid: string;
  name: string;
  price: number;
}

export interface BareCartServer {
  address: string;
  stop(): Promise<void>;
}

interface CartRequest {
  uuid?: string;
  cart_uuid?: string;
  item_uuid?: string;
  quantity?: number;
}

/** Starts the server on a free port of 127.0.0.1; `pool` must see the table `bench_cart_entry`. */
export async function startBareCartServer(pool: pg.Pool, catalogue: readonly BareItem[]): Promise<BareCartServer> {
  const items = new Map(catalogue.map((i) => [i.uuid, i]));
  const carts = new Map<string, Map<string, number>>();

  const cartMessage = (uuid: string, lines: Map<string, number>) => {
    let cents = 0;
    const entries = [...lines].map(([itemUuid, quantity]) => {
      const item = items.get(itemUuid)!;
      cents += Math.round(item.price * 100) * quantity;
      return { item: { uuid: item.uuid, name: item.name, price: item.price }, quantity };
    });
    return { result: { uuid, entries, price_total: cents / 100 } };
  };

  const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
  server.addService(serviceOf('cart', 'Cart').service, {
    AddItem: (call: grpc.ServerUnaryCall<CartRequest, unknown>, done: grpc.sendUnaryData<unknown>) => {
      const { cart_uuid: cart = '', item_uuid: item = '', quantity = 0 } = call.request;
      if (!items.has(item) || quantity <= 0) return done({ code: grpc.status.INVALID_ARGUMENT, details: 'unknown item or bad quantity' });
      pool
        .query({
          name: 'bare-upsert',
          text: 'INSERT INTO bench_cart_entry VALUES ($1, $2, $3) ON CONFLICT (cart_uuid, item_uuid) DO UPDATE SET quantity = bench_cart_entry.quantity + EXCLUDED.quantity',
          values: [cart, item, quantity],
        })
        .then(
          () => {
            let lines = carts.get(cart);
            if (lines === undefined) carts.set(cart, (lines = new Map()));
            lines.set(item, (lines.get(item) ?? 0) + quantity);
            done(null, cartMessage(cart, lines));
          },
          (err: Error) => done({ code: grpc.status.UNAVAILABLE, details: err.message }),
        );
    },
    Get: (call: grpc.ServerUnaryCall<CartRequest, unknown>, done: grpc.sendUnaryData<unknown>) => {
      const uuid = call.request.uuid ?? '';
      const lines = carts.get(uuid);
      if (lines === undefined) return done({ code: grpc.status.NOT_FOUND, details: `no cart ${uuid}` });
      done(null, cartMessage(uuid, lines));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    stop: () => shutdownGrpcServer(server, 2000),
  };
}
