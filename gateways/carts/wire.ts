// Between protobuf messages (as @grpc/proto-loader gives them, keepCase) and the domain records:
// timestamps, prices in minor units, addresses, and the checks on what clients send.

import * as grpc from '@grpc/grpc-js';
import type { ItemRecord } from '../../actors/catalogue.js';
import { isUuid, minorToPrice } from '../../actors/catalogue.js';
import type { AddressInput } from '../../actors/cart-operations.js';

export interface Timestamp {
  seconds: string | number;
  nanos: number;
}

/** A status the client can act on; thrown by handlers, sent as the call's error. */
export class RpcError extends Error {
  readonly status: grpc.status;
  constructor(status: grpc.status, message: string) {
    super(message);
    this.name = 'RpcError';
    this.status = status;
  }
}

export function invalid(message: string): RpcError {
  return new RpcError(grpc.status.INVALID_ARGUMENT, message);
}

export function timestamp(ms: number): Timestamp | null {
  if (!ms) return null;
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

export function itemMsg(item: ItemRecord): Record<string, unknown> {
  return {
    uuid: item.uuid,
    name: item.name,
    description: item.description,
    price: minorToPrice(item.priceMinor),
    created: timestamp(item.created),
    updated: timestamp(item.updated),
  };
}

/** A uuid field, lower-cased; INVALID_ARGUMENT naming the field otherwise. */
export function uuidField(value: unknown, field: string): string {
  if (value === undefined || value === null || value === '') throw invalid(`${field} is required: give a uuid like 3f2a0c1e-7b4d-4e8a-9c61-2d5f0a9b8c7e`);
  if (!isUuid(value)) throw invalid(`${field} "${String(value).slice(0, 64)}" is not a uuid (like 3f2a0c1e-7b4d-4e8a-9c61-2d5f0a9b8c7e)`);
  return value.toLowerCase();
}

export function textField(value: unknown, field: string, max: number, required: boolean): string {
  const text = typeof value === 'string' ? value : '';
  if (required && text.trim() === '') throw invalid(`${field} is required and must not be empty`);
  if (text.length > max) throw invalid(`${field} is ${text.length} characters, over the limit of ${max}`);
  return text;
}

const ADDRESS_FIELDS = ['line1', 'line2', 'line3', 'city', 'province', 'zipCode', 'countryCode', 'other'] as const;

export function addressInput(value: unknown): AddressInput {
  if (!value || typeof value !== 'object') throw invalid('address is required');
  const a = value as Record<string, unknown>;
  const uuid = a['UUID'] ? uuidField(a['UUID'], 'address.UUID') : '';
  const out: Record<string, string> = { uuid };
  for (const f of ADDRESS_FIELDS) out[f] = textField(a[f], `address.${f}`, 500, false);
  if (ADDRESS_FIELDS.every((f) => out[f] === '')) throw invalid('address has no field set; give at least line1, city and countryCode');
  return out as unknown as AddressInput;
}

/** An int64 that arrived as a string (longs: String); INVALID_ARGUMENT when not a safe whole number. */
export function int64Field(value: unknown, field: string): number {
  const n = typeof value === 'number' ? value : Number(value ?? 0);
  if (!Number.isSafeInteger(n)) throw invalid(`${field} ${String(value)} is not a whole number in range`);
  return n;
}
