// What each cart operation does to a cart record, and how a cart reads as entries with current
// item prices. Pure functions: the cart actor (cart.ts) runs them one batch at a time.

import { randomUUID } from 'node:crypto';
import type { AddressRecord, CartRecord, ItemRecord } from './catalogue.js';

export const MAX_QUANTITY = 2_147_483_647; // int32 on the wire
export const MAX_LINES = 1000;

export type CartErrorCode = 'NOT_FOUND' | 'PERMISSION_DENIED' | 'FAILED_PRECONDITION' | 'INVALID_ARGUMENT';

/** A refusal a caller can act on; `code` names the gRPC status. */
export class CartError extends Error {
  readonly code: CartErrorCode;
  constructor(code: CartErrorCode, message: string) {
    super(message);
    this.name = 'CartError';
    this.code = code;
  }
}

/** Who asks: the user of the bearer token, and whether it holds the admin role. */
export interface Caller {
  user: string;
  admin: boolean;
}

export type AddressInput = Omit<AddressRecord, 'created' | 'updated'>;

export type CartOperation =
  | { kind: 'get'; caller: Caller }
  | { kind: 'configureAddress'; caller: Caller; address: AddressInput }
  | { kind: 'addItem'; caller: Caller; itemUuid: string; quantity: number }
  | { kind: 'updateQuantity'; caller: Caller; itemUuid: string; quantity: number }
  | { kind: 'empty'; caller: Caller };

export interface CartEntryView {
  item: ItemRecord;
  quantity: number;
}

/** A cart as callers see it: entries joined with the items' current prices. */
export interface CartView {
  uuid: string;
  userUuid: string;
  entries: CartEntryView[];
  address: AddressRecord | null;
  priceTotalMinor: number;
  created: number;
  updated: number;
}

export type OperationResult = { ok: CartView } | { error: { code: CartErrorCode; message: string } };

/** The item uuids a batch needs to read: those in the cart and those the operations name. */
export function itemsNeeded(cart: CartRecord | undefined, ops: readonly CartOperation[]): string[] {
  const set = new Set<string>();
  for (const l of cart?.lines ?? []) set.add(l.itemUuid);
  for (const op of ops) if (op.kind === 'addItem' || op.kind === 'updateQuantity') set.add(op.itemUuid);
  return [...set];
}

/** Lines whose item was deleted leave the cart (the store already deleted their rows). */
export function withoutDeletedItems(cart: CartRecord | undefined, items: ReadonlyMap<string, ItemRecord>): CartRecord | undefined {
  if (!cart || cart.lines.every((l) => items.has(l.itemUuid))) return cart;
  return { ...cart, lines: cart.lines.filter((l) => items.has(l.itemUuid)) };
}

export function viewOf(cart: CartRecord, items: ReadonlyMap<string, ItemRecord>): CartView {
  let total = 0;
  const entries: CartEntryView[] = [];
  for (const l of cart.lines) {
    const item = items.get(l.itemUuid);
    if (!item) continue;
    entries.push({ item, quantity: l.quantity });
    total += item.priceMinor * l.quantity;
  }
  return { uuid: cart.uuid, userUuid: cart.userUuid, entries, address: cart.address, priceTotalMinor: total, created: cart.created, updated: cart.updated };
}

function notFound(key: string): CartError {
  return new CartError('NOT_FOUND', `cart ${key} does not exist; a cart comes to exist on its first AddItem or ConfigureAddress`);
}

function checkOwner(cart: CartRecord, caller: Caller, write: boolean): void {
  if (cart.userUuid === caller.user) return;
  if (caller.admin && !write) return;
  throw new CartError('PERMISSION_DENIED', `cart ${cart.uuid} belongs to another user; use a cart uuid of your own (a new uuid makes a new cart)`);
}

function fresh(key: string, caller: Caller, now: number): CartRecord {
  return { uuid: key, userUuid: caller.user, lines: [], address: null, created: now, updated: now, version: 0 };
}

/**
 * Applies one operation; returns the cart after it (the same object when nothing changed).
 * Throws CartError when the operation is refused; the cart is then unchanged.
 */
export function applyOperation(
  key: string,
  cart: CartRecord | undefined,
  op: CartOperation,
  items: ReadonlyMap<string, ItemRecord>,
  now: number,
): CartRecord | undefined {
  switch (op.kind) {
    case 'get': {
      if (!cart) throw notFound(key);
      checkOwner(cart, op.caller, false);
      return cart;
    }
    case 'configureAddress': {
      const base = cart ?? fresh(key, op.caller, now);
      checkOwner(base, op.caller, true);
      const uuid = base.address?.uuid || op.address.uuid || randomUUID();
      const address: AddressRecord = { ...op.address, uuid, created: base.address?.created ?? now, updated: now };
      return { ...base, address, updated: now };
    }
    case 'addItem': {
      if (!Number.isInteger(op.quantity) || op.quantity <= 0) {
        throw new CartError('INVALID_ARGUMENT', `quantity ${op.quantity} must be a whole number of 1 or more`);
      }
      if (cart) checkOwner(cart, op.caller, true);
      if (!items.has(op.itemUuid)) {
        throw new CartError('NOT_FOUND', `item ${op.itemUuid} does not exist; list the catalogue with Item/List`);
      }
      const base = cart ?? fresh(key, op.caller, now);
      const at = base.lines.findIndex((l) => l.itemUuid === op.itemUuid);
      if (at < 0) {
        if (base.lines.length >= MAX_LINES) {
          throw new CartError('FAILED_PRECONDITION', `cart ${key} already holds ${MAX_LINES} different items, the most a cart can hold; remove some first`);
        }
        return { ...base, lines: [...base.lines, { itemUuid: op.itemUuid, quantity: op.quantity, added: now }], updated: now };
      }
      const quantity = base.lines[at]!.quantity + op.quantity;
      if (quantity > MAX_QUANTITY) {
        throw new CartError('FAILED_PRECONDITION', `cart ${key} would hold ${quantity} of item ${op.itemUuid}, over the limit of ${MAX_QUANTITY}`);
      }
      const lines = base.lines.slice();
      lines[at] = { ...lines[at]!, quantity };
      return { ...base, lines, updated: now };
    }
    case 'updateQuantity': {
      if (!Number.isInteger(op.quantity) || op.quantity < 0) {
        throw new CartError('INVALID_ARGUMENT', `quantity ${op.quantity} must be a whole number of 0 or more (0 removes the item)`);
      }
      if (!cart) throw notFound(key);
      checkOwner(cart, op.caller, true);
      const at = cart.lines.findIndex((l) => l.itemUuid === op.itemUuid);
      if (at < 0) {
        if (op.quantity === 0) return cart; // removing what is not there: done already
        throw new CartError('FAILED_PRECONDITION', `item ${op.itemUuid} is not in cart ${key}; add it with AddItem first`);
      }
      if (cart.lines[at]!.quantity === op.quantity) return cart;
      const lines = op.quantity === 0 ? cart.lines.filter((_, i) => i !== at) : cart.lines.map((l, i) => (i === at ? { ...l, quantity: op.quantity } : l));
      return { ...cart, lines, updated: now };
    }
    case 'empty': {
      if (!cart) throw notFound(key);
      checkOwner(cart, op.caller, true);
      if (cart.lines.length === 0) return cart;
      return { ...cart, lines: [], updated: now };
    }
  }
}
