// Errors from the actors, the store and the runtime, as gRPC statuses with messages a person can act on.

import * as grpc from '@grpc/grpc-js';
import { CartError } from '../../actors/cart-operations.js';
import { CartBusy } from '../../actors/cart-client.js';
import { AuthError } from './auth.js';
import { RpcError } from './wire.js';

const CART_CODES: Record<CartError['code'], grpc.status> = {
  NOT_FOUND: grpc.status.NOT_FOUND,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
};

export function toStatus(err: unknown): { code: grpc.status; details: string } {
  if (err instanceof RpcError) return { code: err.status, details: err.message };
  if (err instanceof AuthError) return { code: grpc.status.UNAUTHENTICATED, details: err.message };
  if (err instanceof CartError) return { code: CART_CODES[err.code], details: err.message };
  if (err instanceof CartBusy) return { code: grpc.status.RESOURCE_EXHAUSTED, details: err.message };
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  switch (code) {
    case 'OVERLOADED':
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: message };
    case 'ASK_TIMEOUT':
      return { code: grpc.status.DEADLINE_EXCEEDED, details: message };
    case 'NOT_RUNNING':
      return { code: grpc.status.UNAVAILABLE, details: `${message}; retry on another node` };
    case 'CART_CONFLICT':
      return { code: grpc.status.ABORTED, details: `${message}; the cart changed under this call several times over: retry it` };
    case 'PEER_GONE':
      return { code: grpc.status.UNAVAILABLE, details: `${message}; the cart has moved to another node: Get it to see whether the change was applied, then retry` };
    // The cluster could not serve the cart's partition just now (a lease lapsed on a paused Redis,
    // a hand-off, a node cut from its peers): nothing or maybe something was applied; the message
    // says which, and the client should retry, not treat it as a bug.
    case 'PARTITION_UNAVAILABLE':
    case 'PARTITION_MOVED':
      return { code: grpc.status.UNAVAILABLE, details: message };
    case 'PEER_UNREACHABLE':
    case 'CHANGELOG_UNAVAILABLE':
      return { code: grpc.status.UNAVAILABLE, details: `${message}; Get the cart to see whether the change was applied` };
    case 'ECONNREFUSED':
    case '57P01': // admin_shutdown
    case '53300': // too_many_connections
      return { code: grpc.status.UNAVAILABLE, details: `the cart store is unavailable (${message}); retry later` };
  }
  return { code: grpc.status.INTERNAL, details: `internal error: ${message}` };
}
