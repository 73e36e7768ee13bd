// The node's side of `troupe inspect`: the Inspector gRPC service answering for this node (its
// view of members and ring, its partitions, stats, live actors, one actor's state) and sending one
// ask or tell through its router. Bounded: lists and rendered states are capped, and at most
// MAX_IN_FLIGHT calls run at once, so a runaway script cannot load the node. Read-only but for Send.

import * as grpc from '@grpc/grpc-js';
import { DEFAULT_VNODES } from '../cluster/ring.js';
import type { ClusterMember } from '../cluster/cluster-member.js';
import type { ClusterTls } from '../cluster/cluster-tls.js';
import { TroupeError, UnknownActorType } from '../errors.js';
import { grpcServerOptions, type GrpcServerLimits } from '../grpc-limits.js';
import { shutdownGrpcServer } from '../grpc-shutdown.js';
import { rootLogger, type Logger } from '../log.js';
import { parseActorId, partitionOf } from '../partition.js';
import type { InspectedState } from '../shard.js';
import { clusterNotReady, type ActorSystem } from '../system.js';
import {
  DEFAULT_ACTORS_LIMIT,
  inspectorProtocol,
  MAX_ACTORS_LIMIT,
  MAX_ASK_TIMEOUT_MS,
  MAX_MESSAGE_JSON,
  type ActorList,
  type ActorsRequest,
  type ActorState,
  type ActorTypeInfo,
  type NodeDescription,
  type NodeStatsMessage,
  type PartitionView,
  type SendReply,
  type SendRequest,
  type StateRequest,
} from './protocol.js';
import { DEFAULT_RENDER_BYTES, MAX_RENDER_BYTES, renderValue } from './render.js';

export type InspectorMode = 'full' | 'read-only';

/** Calls one node's inspector runs at once; more are refused with RESOURCE_EXHAUSTED. */
export const MAX_IN_FLIGHT = 16;
/** Partitions being acquired whose lease holder a PartitionView names. */
const WAITING_ON_SHOWN = 16;

/** What the service needs of its node; startNode builds it from the node's parts. */
export interface InspectedNode {
  readonly nodeId: string;
  readonly partitions: number;
  readonly shardCount: number;
  readonly dataDir: string;
  readonly startedAt: number;
  readonly actorTypes: readonly ActorTypeInfo[];
  readonly defaultAskTimeoutMs: number;
  /** The node, once it runs; throws NotRunning while it starts or stops. */
  system(): ActorSystem & { servesPartition(partition: number): boolean };
  /** The node's cluster membership; undefined for a node on its own. */
  cluster(): ClusterMember | undefined;
  /** host:port this node is reached at. */
  address(): string;
  /** The gateways' and the ops port, as bound. */
  ports(): Record<string, number>;
  inspectState(id: string, maxBytes: number): Promise<InspectedState>;
}

/** A gRPC service to add to a server: its definition and implementation. */
export interface GrpcService {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

class InspectorError extends Error {
  constructor(
    readonly status: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

function badRequest(message: string): InspectorError {
  return new InspectorError(grpc.status.INVALID_ARGUMENT, message);
}

export function inspectorService(node: InspectedNode, mode: InspectorMode, log: Logger = rootLogger()): GrpcService {
  const types = new Map(node.actorTypes.map((t) => [t.name, t]));
  let inFlight = 0;

  const knownType = (type: string): ActorTypeInfo => {
    const t = types.get(type);
    if (!t) throw new InspectorError(grpc.status.NOT_FOUND, new UnknownActorType(type, [...types.keys()]).message);
    return t;
  };
  const actorId = (id: string): { type: ActorTypeInfo; partition: number } => {
    let type: string;
    try {
      type = parseActorId(id).type;
    } catch (err) {
      throw badRequest((err as Error).message);
    }
    return { type: knownType(type), partition: partitionOf(id, node.partitions) };
  };
  const budget = (maxBytes: number): number => (maxBytes > 0 ? Math.min(maxBytes, MAX_RENDER_BYTES) : DEFAULT_RENDER_BYTES);

  /** One unary method: bounded concurrency, typed errors to status codes, nothing thrown at gRPC. */
  const unary =
    <Req, Res>(name: string, body: (request: Req) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      if (inFlight >= MAX_IN_FLIGHT) {
        callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: `the inspector of node ${node.nodeId} is busy (${inFlight} calls in flight); retry in a moment` });
        return;
      }
      inFlight++;
      body(call.request).then(
        (reply) => {
          inFlight--;
          callback(null, reply);
        },
        (err: unknown) => {
          inFlight--;
          if (err instanceof InspectorError) return callback({ code: err.status, details: err.message });
          const code = err instanceof TroupeError && err.code === 'NOT_RUNNING' ? grpc.status.UNAVAILABLE : grpc.status.INTERNAL;
          if (code === grpc.status.INTERNAL) log.warn({ err, method: name }, 'inspector call failed');
          callback({ code, details: `node ${node.nodeId}: ${err instanceof Error ? err.message : String(err)}` });
        },
      );
    };

  const describe = async (): Promise<NodeDescription> => {
    node.system();
    const cluster = node.cluster();
    const self = { nodeId: node.nodeId, address: node.address(), startedMs: node.startedAt };
    const members = cluster
      ? cluster.membership.members().map((id) => {
          const info = cluster.membership.info(id);
          return { nodeId: id, address: info?.address ?? '', startedMs: info?.started ?? 0 };
        })
      : [self];
    return {
      nodeId: node.nodeId,
      cluster: cluster ? cluster.transport.cluster : '',
      address: self.address,
      startedMs: node.startedAt,
      uptimeMs: Date.now() - node.startedAt,
      shards: node.shardCount,
      partitions: node.partitions,
      pid: process.pid,
      runtime: `node ${process.version}`,
      dataDir: node.dataDir,
      inspectorMode: mode,
      ports: Object.entries(node.ports()).map(([name, port]) => ({ name, port })),
      members,
      actorTypes: [...node.actorTypes],
      notReady: (cluster ? clusterNotReady(cluster.health()) : undefined) ?? '',
      owned: cluster ? cluster.health().owned : node.partitions,
      serving: cluster ? cluster.health().serving : node.partitions,
    };
  };

  const stats = async (): Promise<NodeStatsMessage> => {
    const s = await node.system().stats();
    const mem = process.memoryUsage();
    return {
      nodeId: node.nodeId,
      pendingAsks: s.pendingAsks,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      uptimeMs: Date.now() - node.startedAt,
      shards: s.shards.map((sh) => ({
        shard: sh.shard,
        activations: sh.activations,
        turns: sh.turns,
        turnsFailed: sh.turnsFailed,
        commits: sh.commits,
        committedStates: sh.committedStates,
        activationsTotal: sh.activationsTotal,
        passivationsTotal: sh.passivationsTotal,
        rejectedOverloaded: sh.rejectedOverloaded,
        queued: sh.queued,
        heapUsedBytes: sh.heapUsed,
      })),
      links: (node.cluster()?.transport.stats() ?? []).map((l) => ({
        nodeId: l.peer,
        address: l.address ?? '',
        connected: l.connected,
        queuedFrames: l.queuedFrames,
        queuedBytes: l.queuedBytes,
        framesSent: l.framesSent,
        stalls: l.stalls,
        dials: l.dials,
      })),
    };
  };

  const partitions = async (): Promise<PartitionView> => {
    const system = node.system();
    const cluster = node.cluster();
    const states = Buffer.alloc(node.partitions);
    if (!cluster) {
      for (let p = 0; p < node.partitions; p++) states[p] = system.servesPartition(p) ? 1 : 0;
      return { nodeId: node.nodeId, partitions: node.partitions, ringEpoch: 0, ringMembers: [node.nodeId], vnodes: DEFAULT_VNODES, states, leaseTtlMs: 0, leasesHeld: 0, waitingOn: [], unavailableWhy: '' };
    }
    const view = cluster.ring.view();
    const acquiring: number[] = [];
    for (let p = 0; p < node.partitions; p++) {
      const s = cluster.ownership.state(p);
      // Serving counts only while the lease holds by this node's clock (what the shards check).
      states[p] = s === 'serving' ? (cluster.leases.holds(p) ? 1 : 4) : s === 'acquiring' ? 2 : s === 'releasing' ? 3 : s === 'unavailable' ? 4 : 0;
      if (s === 'acquiring' && acquiring.length < WAITING_ON_SHOWN) acquiring.push(p);
    }
    // Who holds them is a nicety: without Redis the view goes without it rather than failing.
    const holders = await Promise.all(acquiring.map((p) => cluster.leases.holderOf(p))).catch(() => undefined);
    return {
      nodeId: node.nodeId,
      partitions: node.partitions,
      ringEpoch: Math.max(0, view.epoch),
      ringMembers: [...view.members],
      vnodes: cluster.ring.vnodes,
      states,
      leaseTtlMs: cluster.leases.ttlMs,
      leasesHeld: cluster.leases.held().length,
      waitingOn: holders ? acquiring.map((p, i) => ({ partition: p, nodeId: holders[i]?.node ?? '', epoch: holders[i]?.epoch ?? 0 })) : [],
      unavailableWhy: cluster.health().why || cluster.incarnation.lost(),
    };
  };

  const actors = async (req: ActorsRequest): Promise<ActorList> => {
    if (req.type !== '') knownType(req.type);
    const limit = Math.min(req.limit > 0 ? req.limit : DEFAULT_ACTORS_LIMIT, MAX_ACTORS_LIMIT);
    const ids = await node.system().listActors({ type: req.type || undefined, limit });
    return { nodeId: node.nodeId, ids, limit };
  };

  const state = async (req: StateRequest): Promise<ActorState> => {
    const system = node.system();
    const { type, partition } = actorId(req.id);
    const shard = partition % node.shardCount;
    const found = await node.inspectState(req.id, budget(req.maxBytes));
    return {
      nodeId: node.nodeId,
      id: req.id,
      partition,
      shard,
      servedHere: system.servesPartition(partition),
      storage: type.storage,
      ...found,
    };
  };

  const send = async (req: SendRequest): Promise<SendReply> => {
    if (mode !== 'full') {
      throw new InspectorError(grpc.status.PERMISSION_DENIED, `the inspector of node ${node.nodeId} is read-only (--inspector read-only): it sends no ask or tell`);
    }
    const system = node.system();
    const { type } = actorId(req.id);
    if (!type.handlers.includes(req.handler)) {
      throw new InspectorError(grpc.status.NOT_FOUND, `actor type "${type.name}" has no handler "${req.handler}" (handlers: ${type.handlers.join(', ')})`);
    }
    if (req.messageJson.length > MAX_MESSAGE_JSON) throw badRequest(`the message is ${req.messageJson.length} characters of JSON; the inspector sends at most ${MAX_MESSAGE_JSON}`);
    let message: unknown;
    if (req.messageJson !== '') {
      try {
        message = JSON.parse(req.messageJson);
      } catch (err) {
        throw badRequest(`the message is not valid JSON: ${(err as Error).message}`);
      }
    }
    const ref = system.refFromId(req.id);
    if (!req.ask) {
      try {
        ref.tell(req.handler, message as never);
      } catch (err) {
        if (err instanceof TroupeError && err.code === 'OVERLOADED') throw new InspectorError(grpc.status.RESOURCE_EXHAUSTED, err.message);
        throw err;
      }
      return { nodeId: node.nodeId, ok: true, replyJson: '', truncated: false, failure: null };
    }
    const timeoutMs = Math.min(req.timeoutMs > 0 ? req.timeoutMs : node.defaultAskTimeoutMs, MAX_ASK_TIMEOUT_MS);
    try {
      const reply = await ref.ask(req.handler, message as never, { timeoutMs });
      const { json, truncated } = renderValue(reply, { maxBytes: budget(req.maxBytes) });
      return { nodeId: node.nodeId, ok: true, replyJson: json, truncated, failure: null };
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      const code = (e as { code?: unknown }).code;
      const name = (e as { causeName?: unknown }).causeName;
      return {
        nodeId: node.nodeId,
        ok: false,
        replyJson: '',
        truncated: false,
        failure: { name: typeof name === 'string' ? name : e.name, code: typeof code === 'string' ? code : '', message: e.message },
      };
    }
  };

  return {
    definition: inspectorProtocol().service,
    implementation: {
      describe: unary('Describe', describe),
      stats: unary('Stats', stats),
      partitions: unary('Partitions', partitions),
      actors: unary('Actors', actors),
      state: unary('State', state),
      send: unary('Send', send),
    },
  };
}

/**
 * A gRPC server of its own: for a node without a cluster (which has no cluster server to share),
 * or on a separate loopback listener (--inspector-port). With `tls`, callers need a client
 * certificate from the cluster's CA, as on the cluster port.
 */
export async function startInspectorServer(
  host: string,
  port: number,
  service: GrpcService,
  limits: Partial<GrpcServerLimits> = {},
  tls?: ClusterTls,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = new grpc.Server(grpcServerOptions({ maxReceiveMessageBytes: MAX_MESSAGE_JSON + 64 * 1024, ...limits }));
  server.addService(service.definition, service.implementation);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, tls?.serverCredentials() ?? grpc.ServerCredentials.createInsecure(), (err, p) =>
      err
        ? reject(new Error(`the inspector cannot listen on ${host}:${port}: ${err.message}; choose another --cluster-port (0: any free port) or turn it off with --inspector off`))
        : resolve(p),
    ),
  );
  return {
    port: bound,
    close: () => shutdownGrpcServer(server, 1000),
  };
}
