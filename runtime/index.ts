// The public API of the Troupe runtime.

export { defineActor, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAILBOX_CAPACITY } from './actor.js';
export type {
  ActorContext,
  ActorDefinition,
  AnyActorDefinition,
  AskOptions,
  Handler,
  HandlerName,
  MessageOf,
  ReplyOf,
  ResourceSpec,
  ShardEnvironment,
  Storage,
  TimerId,
  ViewSpec,
} from './actor.js';
export { ActorRef } from './actor-ref.js';
export {
  ActorFailure,
  AskTimeout,
  ConfigError,
  NotRunning,
  Overloaded,
  PeerGone,
  RETRYABLE_CODES,
  TroupeError,
  UnknownActorType,
  UnknownHandler,
} from './errors.js';
export type { Gateway, GatewayHost, RunningGateway, ServiceFigure } from './gateway.js';
export { redactedUrl } from './redact.js';
export { connectRedis, describeRedis, openRedis, parseSentinels, redisEndpoint } from './redis-connection.js';
export type { RedisEndpoint, RedisRole, RedisTarget } from './redis-connection.js';
export { redisEndpointFrom, redisSettings } from './redis-settings.js';
export { ReplicaWait, ReplicasDidNotConfirm, waitReplicasOf } from './replica-wait.js';
export type { WaitReplicas } from './replica-wait.js';
export { shutdownGrpcServer } from './grpc-shutdown.js';
export { makePrivateDir, makePrivateFile } from './private-files.js';
export { DEFAULT_GRPC_LIMITS, grpcServerOptions, type GrpcServerLimits } from './grpc-limits.js';
export { rootLogger } from './log.js';
export { activeTraceparent, currentTrace, inChildSpan, inConsumerSpan, inServerSpan, inTrace, isTracing } from './tracing.js';
export { flushTracing, startTracing, stopTracing } from './tracing-sdk.js';
export type { TracingOptions } from './tracing-sdk.js';
export type { Logger } from './log.js';
export { LocalMembership } from './membership.js';
export type { Membership } from './membership.js';
export { startNode } from './node.js';
export type { ClusterOptions, InspectorOptions, NodeOptions, TroupeNode } from './node.js';
export { actorId, partitionOf, DEFAULT_PARTITIONS } from './partition.js';
export { projectRoot, protoPath } from './paths.js';
export { describeSettings, envName, parseDuration, readSettings } from './settings.js';
export type { SettingSpec, SettingValues } from './settings.js';
export type { ActorSystem, NodeStats, ShardStats } from './system.js';
