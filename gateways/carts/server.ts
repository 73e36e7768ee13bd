// The carts gRPC server: Cart and Item services behind bearer-token auth, plus health checking
// and reflection; each call is counted and timed on the node's metrics registry.

import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { CatalogueStore } from '../../actors/catalogue.js';
import type { CartClient } from '../../actors/cart-client.js';
import { grpcServerOptions, inServerSpan, shutdownGrpcServer, type GrpcServerLimits, type Logger } from '../../runtime/index.js';
import type { PublicTls } from '../public-tls.js';
import { bearerOf, verifyToken, type Principal } from './auth.js';
import { cartHandlers } from './cart-service.js';
import { itemHandlers } from './item-service.js';
import { sedeoProtos, serviceOf } from './protos.js';
import { toStatus } from './status.js';

type Handler = (who: Principal, req: any) => Promise<unknown>;

export interface CartsServerOptions {
  store: CatalogueStore;
  carts: CartClient;
  secret: string;
  log: Logger;
  metrics?: Registry;
  now?: () => number;
  /** The gRPC server's connection limits (runtime/grpc-limits.ts has the defaults). */
  limits?: Partial<GrpcServerLimits>;
  /** Serve TLS with this certificate (public-tls.ts); absent: plaintext. */
  tls?: Pick<PublicTls, 'cert' | 'key'>;
}

/** The call counter and timer of one method, bound once: a label lookup per call is not free. */
interface MethodMetrics {
  ok: Counter.Internal;
  code(code: grpc.status): Counter.Internal;
  seconds: Histogram.Internal<string>;
}

function metricsOf(registry: Registry | undefined) {
  if (!registry) return undefined;
  const calls =
    (registry.getSingleMetric('troupe_carts_rpc_total') as Counter<'method' | 'code'> | undefined) ??
    new Counter({ name: 'troupe_carts_rpc_total', help: 'Carts gateway calls by method and gRPC status', labelNames: ['method', 'code'], registers: [registry] });
  const seconds =
    (registry.getSingleMetric('troupe_carts_rpc_seconds') as Histogram<'method'> | undefined) ??
    new Histogram({
      name: 'troupe_carts_rpc_seconds',
      help: 'Carts gateway call latency',
      labelNames: ['method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers: [registry],
    });
  return (method: string): MethodMetrics => {
    const byCode = new Map<grpc.status, Counter.Internal>();
    const code = (c: grpc.status) => {
      let counter = byCode.get(c);
      if (!counter) byCode.set(c, (counter = calls.labels(method, grpc.status[c])));
      return counter;
    };
    return { ok: code(grpc.status.OK), code, seconds: seconds.labels(method) };
  };
}

/** Verified tokens, so a client's repeated token costs a map lookup, not an HMAC. */
function tokenCache(secret: string, now: () => number) {
  const cache = new Map<string, Principal & { expMs: number }>();
  return (token: string): Principal => {
    const hit = cache.get(token);
    if (hit && hit.expMs > now()) return hit;
    const who = verifyToken(secret, token, now());
    if (cache.size >= 10_000) cache.clear();
    // Re-verify at most a minute later, so an expired token is refused within a minute at worst.
    cache.set(token, { ...who, expMs: Math.min(now() + 60_000, tokenExpiry(token)) });
    return who;
  };
}

function tokenExpiry(token: string): number {
  const exp = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { exp: number }).exp;
  return exp * 1000;
}

/** A caller's W3C traceparent, from the call's metadata. */
export function traceparentOf(metadata: grpc.Metadata): string | undefined {
  const v = metadata.get('traceparent')[0];
  return typeof v === 'string' ? v : undefined;
}

function unary(method: string, handler: Handler, verify: (token: string) => Principal, metrics: MethodMetrics | undefined): grpc.handleUnaryCall<any, any> {
  const [service, name] = method.split('/') as [string, string];
  const attributes = { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': name };
  return (call, callback) => {
    const started = performance.now();
    const finish = (code: grpc.status) => {
      if (!metrics) return;
      (code === grpc.status.OK ? metrics.ok : metrics.code(code)).inc();
      metrics.seconds.observe((performance.now() - started) / 1000);
    };
    let who: Principal;
    try {
      who = verify(bearerOf(call.metadata.get('authorization')));
    } catch (err) {
      const s = toStatus(err);
      finish(s.code);
      callback({ code: s.code, details: s.details });
      return;
    }
    inServerSpan(method, traceparentOf(call.metadata), attributes, () => handler(who, call.request)).then(
      (reply) => {
        finish(grpc.status.OK);
        callback(null, reply);
      },
      (err: unknown) => {
        const s = toStatus(err);
        finish(s.code);
        callback({ code: s.code, details: s.details });
      },
    );
  };
}

function implementation(prefix: string, handlers: Record<string, Handler>, verify: (token: string) => Principal, metrics: ReturnType<typeof metricsOf>) {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, h] of Object.entries(handlers)) impl[name] = unary(`${prefix}/${name}`, h, verify, metrics?.(`${prefix}/${name}`));
  return impl;
}

/** The service definition with replies that are bytes already (cart-codec.ts) sent as they are. */
function passingEncodedReplies(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([name, method]) => {
      const serialize = method.responseSerialize;
      return [name, { ...method, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)) }];
    }),
  );
}

export interface CartsServer {
  server: grpc.Server;
  health: HealthImplementation;
  port: number;
  stop(): Promise<void>;
}

/** TLS without client certificates (callers prove who they are with bearer tokens), or plaintext. */
function credentialsOf(tls: CartsServerOptions['tls']): grpc.ServerCredentials {
  return tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : grpc.ServerCredentials.createInsecure();
}

export async function startCartsServer(bind: string, options: CartsServerOptions): Promise<CartsServer> {
  const now = options.now ?? Date.now;
  const metrics = metricsOf(options.metrics);
  // channelz keeps per-call bookkeeping for a debugging service this server does not offer.
  const server = new grpc.Server(grpcServerOptions(options.limits, { 'grpc.enable_channelz': 0 }));
  const verify = tokenCache(options.secret, now);
  server.addService(passingEncodedReplies(serviceOf('cart', 'Cart').service), implementation('cart.Cart', cartHandlers(options.carts), verify, metrics));
  server.addService(serviceOf('item', 'Item').service, implementation('item.Item', itemHandlers({ store: options.store, now, itemsChanged: (uuids) => options.carts.itemsChanged(uuids) }), verify, metrics));
  const health = new HealthImplementation({ '': 'SERVING', 'cart.Cart': 'SERVING', 'item.Item': 'SERVING' });
  health.addToServer(server);
  new ReflectionService(sedeoProtos().definition).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(bind, credentialsOf(options.tls), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    server,
    health,
    port,
    stop: () => {
      health.setStatus('', 'NOT_SERVING');
      return shutdownGrpcServer(server, 5000);
    },
  };
}
