// The limits every gRPC server of a node sets (streams per connection, idle and age of a
// connection, keepalive, message size): one place, so no server is left unbounded.

import type * as grpc from '@grpc/grpc-js';
import type { SettingSpec, SettingValues } from './settings.js';

export interface GrpcServerLimits {
  /** Streams open at once on one connection; past it the client must wait. */
  maxConcurrentStreams: number;
  /** A connection with no open stream this long is closed (a peer that sent only the preface, too). */
  maxConnectionIdleMs: number;
  /** A connection this old is asked to go away (GOAWAY); its streams get the grace to finish. */
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
  /** The server pings a connection this quiet, and closes it when the ping is not answered in the timeout. */
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** Largest message taken, in bytes; a larger one fails its call before it is buffered whole. */
  maxReceiveMessageBytes: number;
}

export const DEFAULT_GRPC_LIMITS: Readonly<GrpcServerLimits> = {
  maxConcurrentStreams: 1000,
  maxConnectionIdleMs: 5 * 60_000,
  maxConnectionAgeMs: 24 * 3_600_000,
  maxConnectionAgeGraceMs: 3_600_000,
  keepaliveTimeMs: 60_000,
  keepaliveTimeoutMs: 20_000,
  maxReceiveMessageBytes: 4 * 1_048_576,
};

/**
 * The options of a `new grpc.Server(...)`: the defaults, what the site gives (its message size at
 * least), and options of its own (`extra`) that are not limits.
 */
export function grpcServerOptions(limits: Partial<GrpcServerLimits> = {}, extra: grpc.ServerOptions = {}): grpc.ServerOptions {
  const l = { ...DEFAULT_GRPC_LIMITS, ...limits };
  for (const [name, value] of Object.entries(l)) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`gRPC server limit ${name}: got ${value}; expected a whole number of at least 1`);
  }
  return {
    ...extra,
    'grpc.max_concurrent_streams': l.maxConcurrentStreams,
    'grpc.max_connection_idle_ms': l.maxConnectionIdleMs,
    'grpc.max_connection_age_ms': l.maxConnectionAgeMs,
    'grpc.max_connection_age_grace_ms': l.maxConnectionAgeGraceMs,
    'grpc.keepalive_time_ms': l.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': l.keepaliveTimeoutMs,
    'grpc.max_receive_message_length': l.maxReceiveMessageBytes,
  };
}

/**
 * The node-wide settings of these limits (`troupe node --grpc-max-streams ...`), shared by every
 * gRPC server of the node. `grpc-max-streams` has no default of its own: each server keeps its
 * own (1000; presence 10,000, where a stream is a user).
 */
export const GRPC_LIMIT_SETTINGS: readonly SettingSpec[] = [
  {
    name: 'grpc-max-streams',
    kind: 'int',
    default: undefined,
    min: 1,
    max: 2 ** 31 - 1,
    description: `streams open at once on one connection of a gRPC server (presence, carts, cluster port); past it the client waits (default ${DEFAULT_GRPC_LIMITS.maxConcurrentStreams}, presence 10000)`,
  },
  {
    name: 'grpc-idle-timeout',
    kind: 'duration',
    default: DEFAULT_GRPC_LIMITS.maxConnectionIdleMs,
    min: 100,
    description: 'a gRPC connection with no open stream this long is closed (also one that sent only the HTTP/2 preface)',
  },
  {
    name: 'grpc-max-connection-age',
    kind: 'duration',
    default: DEFAULT_GRPC_LIMITS.maxConnectionAgeMs,
    min: 1000,
    description: `a gRPC connection this old is asked to go away (GOAWAY; its open streams get ${DEFAULT_GRPC_LIMITS.maxConnectionAgeGraceMs / 60_000} min to finish) and the client reconnects`,
  },
];

/** The limits the settings give; what they leave unset is left out, so each server's own default holds. */
export function grpcLimitsFrom(values: SettingValues): Partial<GrpcServerLimits> {
  const limits: Partial<GrpcServerLimits> = {};
  const streams = values['grpc-max-streams'];
  const idle = values['grpc-idle-timeout'];
  const age = values['grpc-max-connection-age'];
  if (typeof streams === 'number') limits.maxConcurrentStreams = streams;
  if (typeof idle === 'number') limits.maxConnectionIdleMs = idle;
  if (typeof age === 'number') limits.maxConnectionAgeMs = age;
  return limits;
}
