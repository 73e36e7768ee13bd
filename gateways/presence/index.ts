// The presence gateway (gRPC `Gateway` and `StatusReader`, section 1 of the wire contracts) as a
// Troupe Gateway: each accepted Pong is told to the durable actor `user/<id>`, and the online count
// is the user type's view summed over every shard of every node.

import { ActorRef, inServerSpan, isTracing, type Gateway, type GatewayHost, type RunningGateway } from '../../runtime/index.js';
import User from '../../actors/user.js';
import { GRPC_LIMIT_SETTINGS, grpcLimitsFrom } from '../../runtime/grpc-limits.js';
import { publicTlsFrom, publicTlsSettings } from '../public-tls.js';
import type { PongMessage } from '../../actors/user-presence.js';
import { DEFAULT_MAX_CLIENTS, DEFAULT_MAX_PONGS_PER_PING, DEFAULT_PONG_TIMEOUT_MS, PresenceServer, type PresenceSink } from './server.js';

export interface PresenceGatewayOptions {
  /** Wall clock for Pong times and the 3-minute window; tests move it instead of waiting. */
  clock?: () => number;
}

/** Pongs become tells to `user/<id>`; the count is `system.query(user, { nowMs })`. */
export function actorSink(system: GatewayHost['system']): PresenceSink {
  return {
    reporter(userId) {
      const ref: ActorRef<typeof User> = system.ref(User, userId);
      return (status, atMs) => {
        // Traced (sampled by ratio): a span per Pong, the tell to the user inside it.
        if (!isTracing()) return ref.tell('pong', { status, atMs } satisfies PongMessage);
        inServerSpan('presence.Pong', undefined, { 'presence.user': userId }, () => ref.tell('pong', { status, atMs } satisfies PongMessage));
      };
    },
    onlineUsers: (nowMs) => system.query<number>(User, { nowMs }),
  };
}

export function createPresenceGateway(options: PresenceGatewayOptions = {}): Gateway {
  return {
    name: 'presence',
    actorModules: [new URL('../../actors/user.js', import.meta.url).href],
    settings: [
      { name: 'presence-port', kind: 'port', default: 50051, description: 'gRPC port of the presence Gateway and StatusReader services' },
      { name: 'presence-pong-timeout', kind: 'duration', default: DEFAULT_PONG_TIMEOUT_MS, min: 1000, description: 'close a presence stream that sent no Pong for this long' },
      { name: 'presence-max-clients', kind: 'int', default: DEFAULT_MAX_CLIENTS, min: 1, description: 'most presence streams one node holds; more are refused with RESOURCE_EXHAUSTED' },
      { name: 'presence-max-pongs-per-ping', kind: 'int', default: DEFAULT_MAX_PONGS_PER_PING, min: 1, description: 'a stream sending more Pongs than this for one Ping is closed as a flood' },
      ...publicTlsSettings('presence', 'the presence gRPC port'),
      ...GRPC_LIMIT_SETTINGS,
    ],
    async start(host: GatewayHost): Promise<RunningGateway> {
      const log = host.log.child({ gateway: 'presence' });
      const tls = publicTlsFrom(host.settings, 'presence');
      if (tls?.warning) log.warn(`presence: ${tls.warning}`);
      const server = new PresenceServer({
        sink: actorSink(host.system),
        log,
        tls,
        limits: grpcLimitsFrom(host.settings),
        metrics: host.metrics,
        clock: options.clock,
        pongTimeoutMs: Number(host.settings['presence-pong-timeout'] ?? DEFAULT_PONG_TIMEOUT_MS),
        maxClients: Number(host.settings['presence-max-clients'] ?? DEFAULT_MAX_CLIENTS),
        maxPongsPerPing: Number(host.settings['presence-max-pongs-per-ping'] ?? DEFAULT_MAX_PONGS_PER_PING),
      });
      const port = await server.listen(host.host, Number(host.settings['presence-port'] ?? 50051));
      host.log.info({ port, tls: tls !== undefined }, `presence gateway listening (gRPC Gateway, StatusReader, health, reflection${tls ? ', TLS' : ''})`);
      const clock = options.clock ?? Date.now;
      return {
        ports: { grpc: port },
        async panel() {
          return [
            { name: 'streams open', value: server.connectedClients, kind: 'gauge' },
            { name: 'users online (3 min)', value: await host.system.query<number>(User, { nowMs: clock() }), kind: 'gauge', scope: 'cluster' },
          ];
        },
        stop: () => server.stop(),
      };
    },
  };
}

export const presenceGateway: Gateway = createPresenceGateway();
