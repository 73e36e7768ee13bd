// The Item service: the catalogue, read by anyone with a token, written by admins only.

import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { ITEM_SORT_FIELDS, priceToMinor, type CatalogueStore, type ItemSortField } from '../../actors/catalogue.js';
import type { Principal } from './auth.js';
import { int64Field, invalid, itemMsg, RpcError, textField, uuidField } from './wire.js';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;
export const MAX_NAME = 200;
export const MAX_DESCRIPTION = 10_000;

type Req = Record<string, any>;

function requireAdmin(who: Principal, what: string): void {
  if (!who.admin) throw new RpcError(grpc.status.PERMISSION_DENIED, `${what} needs the admin role; your token has none (ask for a token with roles ["admin"])`);
}

function price(value: unknown): number {
  const { minor, problem } = priceToMinor(typeof value === 'number' ? value : Number(value ?? 0));
  if (problem) throw invalid(problem);
  return minor!;
}

function notFound(uuid: string): RpcError {
  return new RpcError(grpc.status.NOT_FOUND, `item ${uuid} does not exist; list the catalogue with Item/List`);
}

export interface ItemServiceDeps {
  store: CatalogueStore;
  now: () => number;
  /** Resolves once no cart of the cluster prices these items from an older row (CartClient.itemsChanged). */
  itemsChanged: (uuids: string[]) => Promise<void>;
}

/** The handlers of item.Item, as plain async functions of (caller, request). */
export function itemHandlers({ store, now, itemsChanged }: ItemServiceDeps) {
  return {
    async Create(who: Principal, req: Req) {
      requireAdmin(who, 'Item/Create');
      const t = now();
      const item = {
        uuid: randomUUID(),
        name: textField(req.name, 'name', MAX_NAME, true),
        description: textField(req.description, 'description', MAX_DESCRIPTION, false),
        priceMinor: price(req.price),
        created: t,
        updated: t,
      };
      await store.createItem(item);
      return itemMsg(item);
    },

    async Update(who: Principal, req: Req) {
      requireAdmin(who, 'Item/Update');
      const given = req.item as Req | null | undefined;
      if (!given) throw invalid('item is required: give item.uuid, item.name, item.description and item.price');
      const uuid = uuidField(given.uuid, 'item.uuid');
      const updated = await store.updateItem({
        uuid,
        name: textField(given.name, 'item.name', MAX_NAME, true),
        description: textField(given.description, 'item.description', MAX_DESCRIPTION, false),
        priceMinor: price(given.price),
        updated: now(),
      });
      if (!updated) throw notFound(uuid);
      await itemsChanged([uuid]);
      return itemMsg(updated);
    },

    async Delete(who: Principal, req: Req) {
      requireAdmin(who, 'Item/Delete');
      const uuid = uuidField(req.item_uuid, 'item_uuid');
      if (!(await store.deleteItem(uuid))) throw notFound(uuid);
      await itemsChanged([uuid]);
      return {};
    },

    async Get(_who: Principal, req: Req) {
      const uuid = uuidField(req.item_uuid, 'item_uuid');
      const item = await store.getItem(uuid);
      if (!item) throw notFound(uuid);
      return { item: itemMsg(item) };
    },

    async List(_who: Principal, req: Req) {
      const page = (req.request ?? {}) as Req;
      const sortingText = String(page.sorting ?? '').trim().toLowerCase() || 'created';
      if (!(ITEM_SORT_FIELDS as readonly string[]).includes(sortingText)) {
        throw invalid(`sorting "${String(page.sorting).slice(0, 64)}" is not one of ${ITEM_SORT_FIELDS.join(', ')}`);
      }
      const orderText = String(page.order ?? '').trim().toLowerCase() || 'asc';
      if (orderText !== 'asc' && orderText !== 'desc') throw invalid(`order "${String(page.order).slice(0, 64)}" is not asc or desc`);
      const requested = int64Field(page.requested, 'request.requested') || 1;
      if (requested < 1) throw invalid(`request.requested ${requested} must be a page number of 1 or more (0 means 1)`);
      const size = int64Field(page.size, 'request.size') || DEFAULT_PAGE_SIZE;
      if (size < 1 || size > MAX_PAGE_SIZE) throw invalid(`request.size ${size} must be from 1 to ${MAX_PAGE_SIZE} (0 means ${DEFAULT_PAGE_SIZE})`);
      const offset = (requested - 1) * size;
      if (!Number.isSafeInteger(offset)) throw invalid(`request.requested ${requested} is too far`);
      const { items, total } = await store.listItems({ sorting: sortingText as ItemSortField, order: orderText, offset, limit: size });
      return { items: items.map(itemMsg), pager: { sorting: sortingText, order: orderText, current: requested, total } };
    },
  };
}
