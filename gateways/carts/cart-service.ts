// The Cart service: checks what the client sent, then hands the operation to the cart's actor
// (through the batching CartClient); the owner comes from the token, never from the request.
// Replies are protobuf bytes already (cart-codec.ts); the server passes them through.

import type { CartClient } from '../../actors/cart-client.js';
import type { Caller } from '../../actors/cart-operations.js';
import type { Principal } from './auth.js';
import { encodeCartResult } from './cart-codec.js';
import { addressInput, invalid, uuidField } from './wire.js';

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

export function cartHandlers(carts: CartClient) {
  return {
    async Get(who: Principal, req: Req) {
      const key = uuidField(req.uuid, 'uuid');
      return encodeCartResult(await carts.run(key, { kind: 'get', caller: caller(who) }));
    },

    async ConfigureAddress(who: Principal, req: Req) {
      const key = uuidField(req.cart_uuid, 'cart_uuid');
      const address = addressInput(req.address);
      return encodeCartResult(await carts.run(key, { kind: 'configureAddress', caller: caller(who), address }));
    },

    async AddItem(who: Principal, req: Req) {
      const key = uuidField(req.cart_uuid, 'cart_uuid');
      const itemUuid = uuidField(req.item_uuid, 'item_uuid');
      const n = quantity(req.quantity, 1);
      return encodeCartResult(await carts.run(key, { kind: 'addItem', caller: caller(who), itemUuid, quantity: n }));
    },

    async UpdateQuantity(who: Principal, req: Req) {
      const key = uuidField(req.cart_uuid, 'cart_uuid');
      const itemUuid = uuidField(req.item_uuid, 'item_uuid');
      const n = quantity(req.quantity, 0);
      return encodeCartResult(await carts.run(key, { kind: 'updateQuantity', caller: caller(who), itemUuid, quantity: n }));
    },

    async Empty(who: Principal, req: Req) {
      const key = uuidField(req.cart_uuid, 'cart_uuid');
      return encodeCartResult(await carts.run(key, { kind: 'empty', caller: caller(who) }));
    },
  };
}
