// Node-to-node transport over gRPC: each node dials every peer it sends to and keeps one
// long-lived Link stream to it, carrying one binary frame (frame-codec.ts) per peer per tick,
// plus redirects and hand-offs (partition state, acknowledged by the receiver on its own link).
// Sends are gathered per tick, queued while the link is down or the stream is full (write()
// returned false: wait for 'drain'), bounded by bytes, and the link redials with backoff.
// With `tls`, links are mutual TLS and a peer's hello must name the node its certificate names.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { MSG_STRIDE, NO_REPLY, REPLY_STRIDE } from '../envelope.js';
import { Overloaded, type WireError } from '../errors.js';
import { grpcServerOptions, type GrpcServerLimits } from '../grpc-limits.js';
import { shutdownGrpcServer } from '../grpc-shutdown.js';
import { rootLogger, type Logger } from '../log.js';
import { partitionOf } from '../partition.js';
import { protoPath } from '../paths.js';
import { ClusterTls, callerCertificate, certificateNames, nodeNameOf } from './cluster-tls.js';
import { decodeFrame, decodeHello, encodeBatch, encodeBatchParts, encodeHandOffAck, encodeHandOffParts, encodeHello, encodeRedirect, FrameError, HANDOFF_ROW_STRIDE } from './frame-codec.js';
import { frameLimit, grpcMessageLimit } from './frame-limit.js';

/** Messages gathered for one peer are encoded at once when they reach this many. */
const FLUSH_AT = 4096 * MSG_STRIDE;

interface WireFrame {
  data: Buffer;
}

interface ClusterServiceClient extends grpc.Client {
  link(): grpc.ClientDuplexStream<WireFrame, WireFrame>;
}

let clusterService: grpc.GrpcObject | undefined;
function loadClusterService(): { service: grpc.ServiceDefinition; Client: new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => ClusterServiceClient } {
  clusterService ??= grpc.loadPackageDefinition(protoLoader.loadSync(protoPath('cluster.proto'), { keepCase: true, defaults: true }));
  const ctor = ((clusterService['troupe'] as grpc.GrpcObject)['cluster'] as grpc.GrpcObject)['Cluster'] as grpc.ServiceClientConstructor;
  return { service: ctor.service, Client: ctor as unknown as new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => ClusterServiceClient };
}

/**
 * What a peer hears when one of its asks named a partition that is not its actor's. Generic on
 * purpose: the details (which id, which partition) go to this node's log, not back to the sender.
 */
const MISROUTED: WireError = { name: 'TroupeError', code: 'MISROUTED', message: 'the receiving node refused the message: its partition is not the one of its actor id' };

/**
 * What a caller hears when its link is refused, whatever the reason (wrong cluster, partition
 * count, certificate, first frame): nothing that helps a stranger guess, such as the cluster's
 * name. The reason goes to this node's log.
 */
export const LINK_REFUSED = 'link refused by the receiving node; its log says why';
/** What a peer hears when its hand-off is refused; the details go to this node's log. */
const HANDOFF_REFUSED = 'the receiving node did not take this hand-off; its log says why';

/** Refusals of misrouted messages are logged at most this often per peer (a hostile peer must not flood the log). */
const REFUSAL_LOG_EVERY_MS = 1000;

export interface ClusterTransportOptions {
  self: string;
  cluster: string;
  partitions: number;
  /** Bind address; default 127.0.0.1. */
  host?: string;
  /** The cluster server's connection limits (runtime/grpc-limits.ts has the defaults). */
  limits?: Partial<GrpcServerLimits>;
  /** Default 0: any free port (read `port` back). */
  port?: number;
  /**
   * Mutual TLS: the server requires a client certificate from the CA, a dialed peer's certificate
   * must name the peer's node name, and an accepted hello's node id must belong to the name in the
   * caller's certificate. Without it, plaintext.
   */
  tls?: ClusterTls;
  /** host:port of a peer now (from the membership), or undefined if unknown; asked at every dial. */
  resolve(peer: string): string | undefined;
  /** Messages and replies from a peer (flat arrays of runtime/envelope.ts). */
  onBatch(from: string, m: unknown[], r: unknown[]): void;
  /** Messages a peer sent back: it does not own their partitions at `epoch`; `owner` is who it believes does. */
  onRedirect(from: string, epoch: number, owner: string, m: unknown[]): void;
  /**
   * The state of partitions another node hands to this one (HANDOFF_ROW_STRIDE values per actor).
   * Store it before resolving: the sender releases the leases when it hears the acknowledgement.
   */
  onHandOff?(from: string, epoch: number, partitions: number[], rows: unknown[]): Promise<void> | void;
  /** A frame that could not be decoded (it is dropped; the link stays up). */
  onMalformed?(from: string | undefined, err: FrameError): void;
  /** Messages that cannot be encoded (a payload v8 cannot serialize): given back, so asks can fail at once. */
  onUnsendable?(peer: string, m: unknown[], r: unknown[], err: Error): void;
  /** More gRPC services to serve on the cluster port (the inspector), added before it binds. */
  services?: readonly { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }[];
  /** [frames] The largest frame sent or taken (frame-limit.ts: default 16 MiB); gRPC refuses a larger one before reading it. */
  maxFrameBytes?: number;
  /** Bytes queued per peer before send() throws Overloaded; default 64 MiB. */
  maxQueuedBytes?: number;
  /** Reconnection backoff; defaults 50 ms doubling to 2000 ms, with jitter. */
  backoff?: { initialMs?: number; maxMs?: number };
  log?: Logger;
}

export interface PeerLinkStats {
  peer: string;
  address: string | undefined;
  connected: boolean;
  queuedFrames: number;
  queuedBytes: number;
  framesSent: number;
  /** Times write() returned false and the link waited for 'drain'. */
  stalls: number;
  dials: number;
}

/** The outbound side of a link to one peer. */
class PeerLink {
  address: string | undefined;
  client: ClusterServiceClient | undefined;
  stream: grpc.ClientDuplexStream<WireFrame, WireFrame> | undefined;
  connected = false;
  /** write() returned false: hold frames until 'drain'. */
  blocked = false;
  connecting = false;
  queue: Buffer[] = [];
  head = 0;
  queuedBytes = 0;
  m: unknown[] = [];
  r: unknown[] = [];
  attempt = 0;
  retry: NodeJS.Timeout | undefined;
  framesSent = 0;
  stalls = 0;
  dials = 0;
  constructor(readonly peer: string) {}
}

export class ClusterTransport {
  readonly self: string;
  readonly cluster: string;
  readonly partitions: number;
  port = 0;
  readonly #o: ClusterTransportOptions;
  readonly #log: Logger;
  readonly #server: grpc.Server;
  readonly #links = new Map<string, PeerLink>();
  readonly #inbound = new Set<grpc.ServerDuplexStream<WireFrame, WireFrame>>();
  readonly #maxQueuedBytes: number;
  readonly #maxFrame: number;
  readonly #backoffInitial: number;
  readonly #backoffMax: number;
  #flushScheduled = false;
  #closed = false;
  #handOffs = 0;
  /** Messages and hand-off rows refused because their partition was not their actor id's. */
  #refused = 0;
  readonly #refusalLogged = new Map<string, { at: number; suppressed: number }>();
  /** performance.now() of the last frame from each peer (reachability.ts counts silence). */
  readonly #heard = new Map<string, number>();
  readonly #awaitingAck = new Map<number, { resolve(): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  readonly #flushAll = (): void => {
    this.#flushScheduled = false;
    for (const link of this.#links.values()) this.#encodeGathered(link);
  };

  private constructor(o: ClusterTransportOptions) {
    this.self = o.self;
    this.cluster = o.cluster;
    this.partitions = o.partitions;
    this.#o = o;
    this.#log = (o.log ?? rootLogger()).child({ node: o.self, part: 'transport' });
    this.#maxQueuedBytes = o.maxQueuedBytes ?? 64 * 1024 * 1024;
    this.#maxFrame = frameLimit(o.maxFrameBytes);
    this.#backoffInitial = o.backoff?.initialMs ?? 50;
    this.#backoffMax = o.backoff?.maxMs ?? 2000;
    this.#server = new grpc.Server(
      grpcServerOptions({ maxReceiveMessageBytes: grpcMessageLimit(this.#maxFrame), ...o.limits }, { 'grpc.keepalive_permit_without_calls': 1, 'grpc.http2.min_ping_interval_without_data_ms': 5000 }),
    );
    this.#server.addService(loadClusterService().service, { link: (call: grpc.ServerDuplexStream<WireFrame, WireFrame>) => this.#accept(call) });
    for (const { definition, implementation } of o.services ?? []) this.#server.addService(definition, implementation);
  }

  /** Binds the server (port 0: any free port) and returns the transport. */
  static async start(o: ClusterTransportOptions): Promise<ClusterTransport> {
    const t = new ClusterTransport(o);
    const host = o.host ?? '127.0.0.1';
    t.port = await new Promise<number>((resolve, reject) =>
      t.#server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${o.port ?? 0}`, o.tls?.serverCredentials() ?? grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(new Error(`cluster transport cannot listen on ${host}:${o.port ?? 0}: ${err.message}`)) : resolve(port),
      ),
    );
    return t;
  }

  // ---- sending ----------------------------------------------------------------------------------

  #link(peer: string): PeerLink {
    let link = this.#links.get(peer);
    if (!link) {
      if (this.#closed) throw new Error(`the cluster transport of ${this.self} is closed`);
      link = new PeerLink(peer);
      this.#links.set(peer, link);
      this.#dial(link);
    }
    return link;
  }

  #checkRoom(link: PeerLink): void {
    if (link.queuedBytes >= this.#maxQueuedBytes) throw new Overloaded(`the link to node ${link.peer} (${link.queuedBytes} bytes queued${link.connected ? '' : ', disconnected'})`);
  }

  #scheduleFlush(): void {
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flushAll);
    }
  }

  /** Sends one message to a peer (gathered with the others of this tick). Throws Overloaded when the link is full. */
  send(peer: string, id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    const link = this.#link(peer);
    this.#checkRoom(link);
    link.m.push(id, partition, handler, payload, origin, askId);
    if (link.m.length >= FLUSH_AT) this.#encodeGathered(link);
    else this.#scheduleFlush();
  }

  /** Sends one reply to an ask that came from a peer. */
  reply(peer: string, askId: number, ok: boolean, value: unknown): void {
    const link = this.#link(peer);
    link.r.push(askId, ok ? 1 : 0, value);
    this.#scheduleFlush();
  }

  /** Sends flat arrays of messages and replies gathered elsewhere (the router's per-tick batch). */
  sendBatch(peer: string, m: readonly unknown[], r: readonly unknown[] = []): void {
    const link = this.#link(peer);
    this.#checkRoom(link);
    for (let i = 0; i < m.length; i++) link.m.push(m[i]);
    for (let i = 0; i < r.length; i++) link.r.push(r[i]);
    if (link.m.length >= FLUSH_AT) this.#encodeGathered(link);
    else this.#scheduleFlush();
  }

  /** Sends messages back to the peer that sent them: this node does not own their partitions at `epoch`. */
  redirect(peer: string, epoch: number, owner: string, m: readonly unknown[]): void {
    if (m.length === 0) return;
    const link = this.#link(peer);
    this.#encodeGathered(link); // keep the order of what was gathered before
    this.#enqueue(link, encodeRedirect(epoch, owner, m, this.#maxFrame));
  }

  /**
   * Ships the committed state of partitions to their new owner and resolves when it acknowledged
   * storing it (rejects on its refusal or after `timeoutMs`). [frames] Rows that do not fit one
   * frame go in several, each acknowledged; an actor whose state cannot go in any is left out (logged).
   */
  handOff(peer: string, epoch: number, partitions: readonly number[], rows: readonly unknown[], timeoutMs = 10_000): Promise<void> {
    let split: ReturnType<typeof encodeHandOffParts>;
    try {
      split = encodeHandOffParts(() => ++this.#handOffs, epoch, partitions, rows, this.#maxFrame);
    } catch (err) {
      return Promise.reject(err);
    }
    if (split.dropped.length > 0) {
      this.#log.warn({ peer, actors: split.dropped.length / HANDOFF_ROW_STRIDE, first: String(split.dropped[0]).slice(0, 200), err: split.first?.message }, 'actors left out of a hand-off: their state does not fit one frame (raise --cluster-max-frame) or cannot be serialized; durable ones come back from the changelogs');
    }
    const link = this.#link(peer);
    this.#encodeGathered(link); // messages gathered before the hand-off go before it
    const acks = split.parts.map(
      ({ id, frame }) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.#awaitingAck.delete(id);
            reject(new Error(`hand-off ${id} of ${partitions.length} partitions to node ${peer} was not acknowledged within ${timeoutMs} ms`));
          }, timeoutMs);
          this.#awaitingAck.set(id, { resolve, reject, timer });
          this.#enqueue(link, frame);
        }),
    );
    return Promise.all(acks).then(() => undefined);
  }

  #acknowledge(id: number, error: string): void {
    const waiting = this.#awaitingAck.get(id);
    if (!waiting) return;
    this.#awaitingAck.delete(id);
    clearTimeout(waiting.timer);
    if (error === '') waiting.resolve();
    else waiting.reject(new Error(`hand-off ${id} refused by the new owner: ${error}`));
  }

  #takeHandOff(from: string, id: number, epoch: number, partitions: number[], rows: unknown[]): void {
    const ack = (error: string): void => {
      if (!this.#closed) this.#enqueue(this.#link(from), encodeHandOffAck(id, error));
    };
    // [frames] The sender hears a generic refusal; why goes to this node's log.
    if (!this.#o.onHandOff) {
      this.#log.warn({ from, id }, `refused a hand-off: node ${this.self} does not take hand-offs`);
      return ack(HANDOFF_REFUSED);
    }
    Promise.resolve()
      .then(() => this.#o.onHandOff!(from, epoch, partitions, rows))
      .then(
        () => ack(''),
        (err: Error) => {
          this.#log.warn({ from, id, epoch, partitions: partitions.length, err: err?.message ?? String(err) }, 'refused a hand-off from another node');
          ack(HANDOFF_REFUSED);
        },
      );
  }

  #encodeGathered(link: PeerLink): void {
    if (link.m.length === 0 && link.r.length === 0) return;
    const { m, r } = link;
    link.m = [];
    link.r = [];
    try {
      this.#enqueue(link, encodeBatch(m, r, this.#maxFrame));
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.#encodeInParts(link, m, r);
    }
  }

  /** [frames] A batch that does not fit one frame, or has a payload that cannot be encoded: send it in parts, give the bad ones back. */
  #encodeInParts(link: PeerLink, m: unknown[], r: unknown[]): void {
    const { frames, badM, badR, first } = encodeBatchParts(m, r, this.#maxFrame);
    for (const frame of frames) this.#enqueue(link, frame);
    if (first === undefined) return;
    this.#log.warn({ peer: link.peer, messages: badM.length / MSG_STRIDE, replies: badR.length / REPLY_STRIDE, err: first.message }, 'messages to another node cannot be encoded; giving them back');
    this.#o.onUnsendable?.(link.peer, badM, badR, first);
  }

  #enqueue(link: PeerLink, frame: Buffer): void {
    link.queue.push(frame);
    link.queuedBytes += frame.length;
    this.#pump(link);
  }

  #pump(link: PeerLink): void {
    const stream = link.stream;
    if (!link.connected || link.blocked || !stream) return;
    while (link.head < link.queue.length) {
      const frame = link.queue[link.head]!;
      link.queue[link.head++] = undefined as unknown as Buffer;
      link.queuedBytes -= frame.length;
      link.framesSent++;
      if (!stream.write({ data: frame })) {
        // Backpressure: gRPC holds this frame; the rest wait here until the stream drains.
        link.blocked = true;
        link.stalls++;
        stream.once('drain', () => {
          link.blocked = false;
          if (link.stream === stream) this.#pump(link);
        });
        break;
      }
    }
    if (link.head === link.queue.length) {
      link.queue = [];
      link.head = 0;
    } else if (link.head > 1024) {
      link.queue = link.queue.slice(link.head);
      link.head = 0;
    }
  }

  // ---- links ------------------------------------------------------------------------------------

  #dial(link: PeerLink): void {
    if (this.#closed || link.connecting || link.connected) return;
    const address = this.#o.resolve(link.peer);
    if (address === undefined) {
      this.#retryLater(link, 'address unknown');
      return;
    }
    if (link.client && link.address !== address) {
      link.client.close();
      link.client = undefined;
    }
    link.address = address;
    const { Client } = loadClusterService();
    const tls = this.#o.tls;
    link.client ??= new Client(address, tls?.channelCredentials() ?? grpc.credentials.createInsecure(), {
      // With TLS the peer's certificate must name the peer's node name, whatever address it is at.
      ...(tls ? ClusterTls.expectServerName(nodeNameOf(link.peer)) : {}),
      'grpc.max_send_message_length': grpcMessageLimit(this.#maxFrame),
      'grpc.max_receive_message_length': grpcMessageLimit(this.#maxFrame),
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': this.#backoffInitial,
      'grpc.max_reconnect_backoff_ms': this.#backoffMax,
    });
    const client = link.client;
    link.connecting = true;
    link.dials++;
    client.waitForReady(Date.now() + Math.max(1000, this.#backoffMax), (err) => {
      link.connecting = false;
      if (this.#closed || this.#links.get(link.peer) !== link || link.client !== client) return;
      if (err) {
        this.#retryLater(link, err.message);
        return;
      }
      const stream = client.link();
      const down = (why: string): void => {
        if (link.stream !== stream) return;
        link.stream = undefined;
        link.connected = false;
        link.blocked = false;
        this.#log.info({ peer: link.peer, address, why }, 'link to peer down; redialing');
        this.#retryLater(link, why);
      };
      stream.on('error', (e: grpc.ServiceError) => down(e.details || e.message));
      stream.on('end', () => down('peer ended the stream'));
      stream.on('data', () => {}); // nothing flows back on this stream today; keep it read
      link.stream = stream;
      link.connected = true;
      link.attempt = 0;
      stream.write({ data: encodeHello(this.self, this.cluster, this.partitions) });
      this.#log.debug({ peer: link.peer, address }, 'link to peer up');
      this.#pump(link);
    });
  }

  #retryLater(link: PeerLink, why: string): void {
    if (this.#closed || link.retry || this.#links.get(link.peer) !== link) return;
    const base = Math.min(this.#backoffMax, this.#backoffInitial * 2 ** Math.min(link.attempt, 20));
    const delay = Math.round(base * (0.5 + Math.random() / 2));
    link.attempt++;
    this.#log.debug({ peer: link.peer, delay, why }, 'redial scheduled');
    link.retry = setTimeout(() => {
      link.retry = undefined;
      this.#dial(link);
    }, delay);
  }

  /** When a frame from the peer last arrived (performance.now() ms), or undefined. */
  lastHeard(peer: string): number | undefined {
    return this.#heard.get(peer);
  }

  /**
   * Sends an empty batch to each peer whose link is up and idle, so that a peer hears from this
   * node at least this often even with no traffic: silence then means a cut (reachability.ts).
   * Dials peers not linked yet. Nothing is queued for a link that is down or backed up.
   */
  heartbeat(peers: readonly string[]): void {
    if (this.#closed) return;
    for (const peer of peers) {
      const link = this.#link(peer);
      if (!link.connected || link.blocked || link.head < link.queue.length || link.m.length > 0 || link.r.length > 0) continue;
      this.#enqueue(link, encodeBatch([], []));
    }
  }

  /** Drops the link to a peer that left or died, with whatever was queued for it. */
  forget(peer: string): void {
    const link = this.#links.get(peer);
    if (!link) return;
    this.#links.delete(peer);
    this.#heard.delete(peer);
    this.#closeLink(link);
  }

  #closeLink(link: PeerLink): void {
    clearTimeout(link.retry);
    link.retry = undefined;
    link.connected = false;
    link.stream?.end();
    link.stream = undefined;
    link.client?.close();
    link.client = undefined;
  }

  stats(): PeerLinkStats[] {
    return [...this.#links.values()].map((l) => ({
      peer: l.peer,
      address: l.address,
      connected: l.connected,
      queuedFrames: l.queue.length - l.head,
      queuedBytes: l.queuedBytes,
      framesSent: l.framesSent,
      stalls: l.stalls,
      dials: l.dials,
    }));
  }

  // ---- receiving --------------------------------------------------------------------------------

  #accept(call: grpc.ServerDuplexStream<WireFrame, WireFrame>): void {
    this.#inbound.add(call);
    let from: string | undefined;
    let refused = false;
    // The caller hears one generic text; the reason, with what it claimed, goes to the log.
    const refuse = (why: string, claimed?: Record<string, unknown>): void => {
      refused = true;
      this.#log.warn({ peer: call.getPeer(), why, ...claimed }, 'refused a link from another node');
      call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: LINK_REFUSED });
    };
    call.on('data', (msg: WireFrame) => {
      if (refused) return;
      if (from === undefined) {
        // Until its hello is accepted a link is a stranger: its first frame is read as a hello
        // and nothing else (no v8.deserialize of its bytes), and whatever follows a refusal is dropped.
        let hello;
        try {
          hello = decodeHello(msg.data);
        } catch (err) {
          const e = err instanceof FrameError ? err : new FrameError(String(err));
          this.#o.onMalformed?.(undefined, e);
          return refuse(`the first frame is not a hello: ${e.message}`);
        }
        const claimed = { node: hello.node.slice(0, 200), cluster: hello.cluster.slice(0, 200), partitions: hello.partitions };
        if (hello.cluster !== this.cluster) return refuse(`the caller is in another cluster (this node is in "${this.cluster}"); check --cluster`, claimed);
        if (hello.partitions !== this.partitions) return refuse(`the caller has another partition count (this node has ${this.partitions}); a cluster has one`, claimed);
        if (this.#o.tls) {
          const cert = callerCertificate(call);
          const names = cert ? certificateNames(cert) : [];
          if (!names.includes(nodeNameOf(hello.node))) {
            return refuse(`the caller's certificate names ${names.join(', ') || 'nobody'}, not node name "${nodeNameOf(hello.node)}" of the node id in its hello`, claimed);
          }
        }
        from = hello.node;
        this.#heard.set(from, performance.now());
        return;
      }
      let frame;
      try {
        frame = decodeFrame(msg.data, this.#maxFrame);
      } catch (err) {
        const e = err instanceof FrameError ? err : new FrameError(String(err));
        this.#o.onMalformed?.(from, e);
        this.#log.error({ from, err: e.message }, 'dropped a malformed frame from another node');
        return;
      }
      this.#heard.set(from, performance.now());
      try {
        if (frame.kind === 'batch') this.#o.onBatch(from, this.#refuseMisrouted(from, frame.m, 'batch'), frame.r);
        else if (frame.kind === 'redirect') {
          const m = this.#refuseMisrouted(from, frame.m, 'redirect');
          if (m.length > 0) this.#o.onRedirect(from, frame.epoch, frame.owner, m);
        }
        else if (frame.kind === 'handoff') this.#takeHandOff(from, frame.id, frame.epoch, frame.partitions, this.#refuseMisroutedRows(from, frame.rows));
        else if (frame.kind === 'handoff-ack') this.#acknowledge(frame.id, frame.error);
        else this.#log.warn({ from }, 'ignored a second hello on a link');
      } catch (err) {
        // A handler's bug must not take the link (or the node) down with it.
        this.#log.error({ from, err }, 'handling a frame from another node threw');
      }
    });
    call.on('error', () => this.#inbound.delete(call));
    call.on('end', () => {
      this.#inbound.delete(call);
      if (!refused) call.end();
    });
  }

  // ---- partitions named by peers ---------------------------------------------------------------

  /**
   * A peer names each message's partition, and shards place actors by it: trusted, a wrong one
   * would activate the actor a second time in another shard (or on a partition this node does not
   * hold). So the partition is computed again from the actor id here, and a message that disagrees
   * (or is out of range) is refused: an ask is answered with a generic error (a redirect's asks,
   * ours, fail at once), a tell is dropped; each refusal is counted and logged.
   */
  #refuseMisrouted(from: string, m: unknown[], kind: 'batch' | 'redirect'): unknown[] {
    const partitions = this.partitions;
    let bad: number[] | undefined;
    for (let i = 0; i < m.length; i += MSG_STRIDE) {
      if (m[i + 1] !== partitionOf(m[i] as string, partitions)) (bad ??= []).push(i);
    }
    if (bad === undefined) return m;
    const good: unknown[] = [];
    const refused: unknown[] = [];
    let next = 0;
    for (let i = 0; i < m.length; i += MSG_STRIDE) {
      const into = i === bad[next] ? (next++, refused) : good;
      for (let k = 0; k < MSG_STRIDE; k++) into.push(m[i + k]);
    }
    this.#countRefused(from, refused.length / MSG_STRIDE, kind, refused[0] as string, refused[1] as number);
    if (kind === 'redirect') {
      // Our own messages, sent back with a partition changed on the way: fail their asks now.
      this.#o.onUnsendable?.(from, refused, [], new FrameError(`node ${from} redirected messages with a partition that is not their actor id's`));
    } else {
      for (let i = 0; i < refused.length; i += MSG_STRIDE) {
        if (refused[i + 4] !== NO_REPLY) this.reply(from, refused[i + 5] as number, false, MISROUTED);
      }
    }
    return good;
  }

  /** Hand-off rows whose partition is not their actor id's are dropped; the others are stored. */
  #refuseMisroutedRows(from: string, rows: unknown[]): unknown[] {
    const partitions = this.partitions;
    let good: unknown[] | undefined;
    let first = -1;
    for (let i = 0; i < rows.length; i += HANDOFF_ROW_STRIDE) {
      const ok = rows[i + 1] === partitionOf(rows[i] as string, partitions);
      if (!ok && good === undefined) {
        good = rows.slice(0, i);
        first = i;
      } else if (ok && good !== undefined) good.push(rows[i], rows[i + 1], rows[i + 2]);
    }
    if (good === undefined) return rows;
    this.#countRefused(from, (rows.length - good.length) / HANDOFF_ROW_STRIDE, 'hand-off', rows[first] as string, rows[first + 1] as number);
    return good;
  }

  #countRefused(from: string, n: number, kind: string, actor: string, partition: number): void {
    this.#refused += n;
    const now = Date.now();
    const last = this.#refusalLogged.get(from);
    if (last !== undefined && now - last.at < REFUSAL_LOG_EVERY_MS) {
      last.suppressed += n;
      return;
    }
    this.#refusalLogged.set(from, { at: now, suppressed: 0 });
    this.#log.warn(
      { from, kind, refused: n, refusedBefore: last?.suppressed ?? 0, actor: actor.slice(0, 200), partition, expected: partitionOf(actor, this.partitions), total: this.#refused },
      'refused messages from another node whose partition is not the one of their actor id (a bug or a hostile peer)',
    );
  }

  /** Messages and hand-off rows refused so far because they named a partition not their actor id's. */
  get refusedMisrouted(): number {
    return this.#refused;
  }

  /** Stops dialing, closes every link and the server. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, waiting] of this.#awaitingAck) {
      clearTimeout(waiting.timer);
      waiting.reject(new Error(`hand-off ${id} abandoned: the cluster transport of ${this.self} is closing`));
    }
    this.#awaitingAck.clear();
    for (const link of this.#links.values()) this.#closeLink(link);
    this.#links.clear();
    for (const call of this.#inbound) call.end();
    await shutdownGrpcServer(this.#server, 1000);
  }
}
