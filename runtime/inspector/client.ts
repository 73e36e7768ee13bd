// A client of one node's Inspector (protos/inspector.proto): promise-returning calls, each with a
// deadline, whose failures say which node and what to do (InspectorCallError); over mutual TLS
// when given the cluster's CA and a certificate it issued.

import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import {
  inspectorProtocol,
  type ActorList,
  type ActorState,
  type NodeDescription,
  type NodeStatsMessage,
  type PartitionView,
  type SendReply,
} from './protocol.js';

/** A call to a node's inspector that failed: the node, the gRPC status, and the node's words. */
export class InspectorCallError extends Error {
  constructor(
    readonly address: string,
    readonly status: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'InspectorCallError';
  }

  /** The node could not be reached at all (down, wrong port, or not a Troupe node). */
  get unreachable(): boolean {
    return this.status === grpc.status.UNAVAILABLE || this.status === grpc.status.DEADLINE_EXCEEDED || this.status === grpc.status.UNIMPLEMENTED;
  }
}

function explain(address: string, method: string, err: grpc.ServiceError, timeoutMs: number, secure: boolean): InspectorCallError {
  // grpc-js wraps the cause: "No connection established. Last error: Error: connect ECONNREFUSED ... Resolution note: "
  const details = (err.details || err.message)
    .replace(/^No connection established\. Last error: (Error: )?/, '')
    .replace(/\.? *Resolution note: *$/, '')
    .trim();
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      return new InspectorCallError(
        address,
        err.code,
        `node ${address} is unreachable (${details}); is a troupe node running there, and is this its cluster port?` +
          (secure ? ' Is --tls-ca the CA that issued its certificate, and did it issue yours?' : ' A node in a cluster wants mutual TLS: give --tls-ca, --tls-cert and --tls-key.'),
      );
    case grpc.status.DEADLINE_EXCEEDED:
      return new InspectorCallError(address, err.code, `node ${address} did not answer ${method} within ${timeoutMs} ms; it may be overloaded or cut off (raise --timeout to wait longer)`);
    case grpc.status.UNIMPLEMENTED:
      return new InspectorCallError(address, err.code, `${address} serves no inspector (${details}); is it a troupe node's cluster port, and is its --inspector on?`);
    default:
      return new InspectorCallError(address, err.code, details);
  }
}

/** PEM files for mutual TLS: the cluster's CA, and a certificate it issued (any name) with its key. */
export interface InspectorTls {
  ca: string;
  cert: string;
  key: string;
}

/**
 * The server's certificate is verified against the cluster's CA, but its name is not checked: the
 * inspector dials members at the addresses they advertise (IP:port, or whatever --advertise says),
 * which their certificates name only if issued with the matching --ip or --dns, and the node behind
 * an address is only known from its answer. Any certificate of the cluster's CA is a member (the
 * nodes themselves check names against node ids between each other).
 */
function inspectorCredentials(tls: InspectorTls): grpc.ChannelCredentials {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read the ${what} ${path}: ${(err as Error).message}`);
    }
  };
  return grpc.credentials.createSsl(read(tls.ca, 'CA certificate'), read(tls.key, 'private key'), read(tls.cert, 'certificate'), { checkServerIdentity: () => undefined });
}

type Unary = (request: object, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null, reply: unknown) => void) => void;

export class InspectorClient {
  readonly address: string;
  readonly timeoutMs: number;
  readonly #client: grpc.Client;
  readonly #secure: boolean;

  constructor(address: string, options: { timeoutMs?: number; tls?: InspectorTls } = {}) {
    this.address = address;
    this.timeoutMs = options.timeoutMs ?? 3000;
    const { Client } = inspectorProtocol();
    this.#secure = options.tls !== undefined;
    this.#client = new Client(address, options.tls ? inspectorCredentials(options.tls) : grpc.credentials.createInsecure(), {
      // The name is not checked (see inspectorCredentials); a fixed one keeps an IP address out of SNI.
      ...(options.tls ? { 'grpc.ssl_target_name_override': 'troupe-node' } : {}),
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      // An inspector session is short and interactive: retry a refused connection fast.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
  }

  #call<T>(method: string, request: object, timeoutMs = this.timeoutMs): Promise<T> {
    const fn = (this.#client as unknown as Record<string, Unary>)[method]!.bind(this.#client);
    return new Promise<T>((resolve, reject) => {
      fn(request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, reply) => {
        if (err) reject(explain(this.address, method, err, timeoutMs, this.#secure));
        else resolve(reply as T);
      });
    });
  }

  describe(): Promise<NodeDescription> {
    return this.#call('describe', {});
  }

  stats(): Promise<NodeStatsMessage> {
    return this.#call('stats', {});
  }

  partitions(): Promise<PartitionView> {
    return this.#call('partitions', {});
  }

  actors(type: string | undefined, limit: number): Promise<ActorList> {
    return this.#call('actors', { type: type ?? '', limit });
  }

  state(id: string, maxBytes = 0): Promise<ActorState> {
    return this.#call('state', { id, maxBytes });
  }

  /** An ask (waits up to askTimeoutMs, plus a margin for the call itself) or a tell. */
  send(o: { id: string; handler: string; messageJson?: string; ask: boolean; askTimeoutMs: number; maxBytes?: number }): Promise<SendReply> {
    return this.#call(
      'send',
      { id: o.id, handler: o.handler, messageJson: o.messageJson ?? '', ask: o.ask, timeoutMs: o.askTimeoutMs, maxBytes: o.maxBytes ?? 0 },
      o.ask ? o.askTimeoutMs + this.timeoutMs : this.timeoutMs,
    );
  }

  close(): void {
    this.#client.close();
  }
}
