// The Inspector's wire contract (protos/inspector.proto) as TypeScript: the loaded service and the
// shapes of its messages, as @grpc/proto-loader gives them (camelCase fields, 64-bit numbers as
// plain numbers, bytes as Buffers, every field present).

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from '../paths.js';

export interface Port {
  name: string;
  port: number;
}

export interface Member {
  nodeId: string;
  address: string;
  startedMs: number;
}

export interface ActorTypeInfo {
  name: string;
  storage: string;
  handlers: string[];
  hasView: boolean;
}

export interface NodeDescription {
  nodeId: string;
  cluster: string;
  address: string;
  startedMs: number;
  uptimeMs: number;
  shards: number;
  partitions: number;
  pid: number;
  runtime: string;
  dataDir: string;
  inspectorMode: string;
  ports: Port[];
  members: Member[];
  actorTypes: ActorTypeInfo[];
  /** Cluster: why the node is not ready ('' when it is), partitions the ring gives it, and those it serves. */
  notReady: string;
  owned: number;
  serving: number;
}

export interface ShardStatsMessage {
  shard: number;
  activations: number;
  turns: number;
  turnsFailed: number;
  commits: number;
  committedStates: number;
  activationsTotal: number;
  passivationsTotal: number;
  rejectedOverloaded: number;
  queued: number;
  heapUsedBytes: number;
}

export interface PeerLinkMessage {
  nodeId: string;
  address: string;
  connected: boolean;
  queuedFrames: number;
  queuedBytes: number;
  framesSent: number;
  stalls: number;
  dials: number;
}

export interface NodeStatsMessage {
  nodeId: string;
  pendingAsks: number;
  rssBytes: number;
  heapUsedBytes: number;
  uptimeMs: number;
  shards: ShardStatsMessage[];
  links: PeerLinkMessage[];
}

/** Values of PartitionView.states, one byte per partition. */
export const PARTITION_STATES = ['elsewhere', 'serving', 'acquiring', 'releasing', 'unavailable'] as const;
export type PartitionStateName = (typeof PARTITION_STATES)[number];

export interface LeaseHolderMessage {
  partition: number;
  nodeId: string;
  epoch: number;
}

export interface PartitionView {
  nodeId: string;
  partitions: number;
  ringEpoch: number;
  ringMembers: string[];
  vnodes: number;
  states: Buffer;
  leaseTtlMs: number;
  leasesHeld: number;
  waitingOn: LeaseHolderMessage[];
  unavailableWhy: string;
}

export interface ActorsRequest {
  type: string;
  limit: number;
}

export interface ActorList {
  nodeId: string;
  ids: string[];
  limit: number;
}

export interface StateRequest {
  id: string;
  maxBytes: number;
}

export interface ActorState {
  nodeId: string;
  id: string;
  partition: number;
  shard: number;
  servedHere: boolean;
  found: 'active' | 'stored' | 'none';
  storage: string;
  json: string;
  truncated: boolean;
  waiting: number;
  busy: boolean;
  timers: number;
}

export interface SendRequest {
  id: string;
  handler: string;
  messageJson: string;
  ask: boolean;
  timeoutMs: number;
  maxBytes: number;
}

export interface FailureMessage {
  name: string;
  code: string;
  message: string;
}

export interface SendReply {
  nodeId: string;
  ok: boolean;
  replyJson: string;
  truncated: boolean;
  failure: FailureMessage | null;
}

/** Default and most actors one node lists per call. */
export const DEFAULT_ACTORS_LIMIT = 20;
export const MAX_ACTORS_LIMIT = 1000;
/** The longest ask an inspector waits for. */
export const MAX_ASK_TIMEOUT_MS = 60_000;
/** The largest message (as JSON text) an inspector accepts to send. */
export const MAX_MESSAGE_JSON = 1024 * 1024;

export type InspectorClientConstructor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => grpc.Client;

let loaded: { service: grpc.ServiceDefinition; Client: InspectorClientConstructor } | undefined;

/** The Inspector service, loaded once from protos/inspector.proto. */
export function inspectorProtocol(): { service: grpc.ServiceDefinition; Client: InspectorClientConstructor } {
  if (!loaded) {
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath('inspector.proto'), { keepCase: false, longs: Number, defaults: true }));
    const ctor = ((pkg['troupe'] as grpc.GrpcObject)['inspector'] as grpc.GrpcObject)['Inspector'] as grpc.ServiceClientConstructor;
    loaded = { service: ctor.service, Client: ctor as unknown as InspectorClientConstructor };
  }
  return loaded;
}
