// The Cart service: checks what the client sent, then hands the operation to the cart's actor
// (through the batching CartClient); the owner comes from the token, never from the request.
// Replies are protobuf bytes already (cart-codec.ts); the server passes them through. Another
// user's cart is answered exactly as a cart that does not exist, so no one probes which exist.

import * as grpc from '@grpc/grpc-js';
import type { CartClient } from '../../actors/cart-client.js';
import { CartError, type Caller, type CartOperation } from '../../actors/cart-operations.js';
import type { Principal } from './auth.js';
import { encodeCartResult } from './cart-codec.js';
import { addressInput, invalid, RpcError, uuidField } from './wire.js';

type Req = Record<string, any>;

function quantity(value: unknown, min: number): number {
  const n = typeof value === 'number' ? value : Number(value ?? 0);
  if (!Number.isInteger(n) || n < min) {
    throw invalid(min === 1 ? `quantity ${String(value)} must be 1 or more` : `quantity ${String(value)} must be 0 or more (0 removes the item)`);
  }
  return n;
}

function caller(who: Principal): Caller {
  return { user: who.user, admin: who.admin };
}

/** The one answer to "no such cart" and "not your cart": same status, same text. */
export function cartNotFound(key: string): RpcError {
  return new RpcError(
    grpc.status.NOT_FOUND,
    `cart ${key} is not one of your carts (it does not exist, or another user owns it); a cart comes to exist on its first AddItem or ConfigureAddress, and a new uuid makes a new cart`,
  );
}

/**
 * Runs `op` on cart `key`. A refusal for ownership (PERMISSION_DENIED from the aggregate) of a
 * caller that is not an admin becomes cartNotFound, and so does the cart's own NOT_FOUND (the
 * only NOT_FOUND of Get, UpdateQuantity and Empty; AddItem's is the item's). An admin reads every
 * cart, so it may be told that it cannot change one.
 */
async function runOn(carts: CartClient, key: string, op: CartOperation) {
  try {
    return await carts.run(key, op);
  } catch (err) {
    if (err instanceof CartError) {
      const notYours = err.code === 'PERMISSION_DENIED' && !op.caller.admin;
      const missing = err.code === 'NOT_FOUND' && (op.kind === 'get' || op.kind === 'updateQuantity' || op.kind === 'empty');
      if (notYours || missing) throw cartNotFound(key);
    }
    throw err;
  }
}

export function cartHandlers(carts: CartClient) {
  return {
    async Get(who: Principal, req: Req) {
      const key = uuidField(req.uuid, 'uuid');
      return encodeCartResult(await runOn(carts, key, { kind: 'get', caller: caller(who) }));
    },

    async ConfigureAddress(who: Principal, req: Req) {
      const key = uuidField(req.cart_uuid, 'cart_uuid');
      const address = addressInput(req.address);
      return encodeCartResult(await runOn(carts, key, { kind: 'configureAddress', caller: caller(who), address }));
    },

    async AddItem(who: Principal, req: Req) {
      const key = uuidField(req.cart_uuid, 'cart_uuid');
      const itemUuid = uuidField(req.item_uuid, 'item_uuid');
      const n = quantity(req.quantity, 1);
      return encodeCartResult(await runOn(carts, key, { kind: 'addItem', caller: caller(who), itemUuid, quantity: n }));
    },

    async UpdateQuantity(who: Principal, req: Req) {
      const key = uuidField(req.cart_uuid, 'cart_uuid');
      const itemUuid = uuidField(req.item_uuid, 'item_uuid');
      const n = quantity(req.quantity, 0);
      return encodeCartResult(await runOn(carts, key, { kind: 'updateQuantity', caller: caller(who), itemUuid, quantity: n }));
    },

    async Empty(who: Principal, req: Req) {
      const key = uuidField(req.cart_uuid, 'cart_uuid');
      return encodeCartResult(await runOn(carts, key, { kind: 'empty', caller: caller(who) }));
    },
  };
}
