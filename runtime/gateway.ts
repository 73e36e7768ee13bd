// The plug a front door fits into: a gateway declares its settings and the actor modules the shards
// must load, and starts on a node's main thread with a GatewayHost.

import type { Registry } from 'prom-client';
import type { Logger } from './log.js';
import type { Membership } from './membership.js';
import type { SettingSpec, SettingValues } from './settings.js';
import type { ActorSystem } from './system.js';

export interface GatewayHost {
  readonly system: ActorSystem;
  readonly membership: Membership;
  /** The node's validated settings, including the gateway's own. */
  readonly settings: SettingValues;
  /** Prometheus registry served on the ops port. */
  readonly metrics: Registry;
  readonly log: Logger;
  /** The node's data directory (exists). */
  readonly dataDir: string;
  /** Where the node listens for clients (the `--host` setting). */
  readonly host: string;
}

/**
 * One figure a service shows on the dashboard. A `count` only grows (the page shows its rate per
 * second and its total); a `gauge` is a level now. Node figures are summed over the nodes; a
 * `cluster` figure is already cluster-wide (each node answers the same), so one node's is shown.
 */
export interface ServiceFigure {
  name: string;
  value: number;
  kind: 'count' | 'gauge';
  scope?: 'node' | 'cluster';
  /** Unit after the number (`ms`, `s`); none for plain counts. */
  unit?: string;
}

export interface RunningGateway {
  /** What it bound, by name: `{ grpc: 50051 }`. Printed by the node at start. */
  readonly ports: Record<string, number>;
  /** Readiness for /readyz: resolve a reason string when not ready, undefined when ready. */
  notReady?(): Promise<string | undefined>;
  /** The service's figures for the dashboard, read only while someone watches it. */
  panel?(): Promise<ServiceFigure[]>;
  /** Stop accepting, finish in-flight work; the node stops the shards after every gateway stopped. */
  stop(): Promise<void>;
}

export interface Gateway {
  readonly name: string;
  /** Module URLs (import.meta.resolve / new URL(..., import.meta.url).href) of the actor types it uses. */
  readonly actorModules: readonly string[];
  readonly settings: readonly SettingSpec[];
  start(host: GatewayHost): Promise<RunningGateway>;
}
