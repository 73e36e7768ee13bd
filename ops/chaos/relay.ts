// A TCP relay in chaos's own process, from the run's bridge address to a server chaos does not own
// on the host's loopback (MySQL on 127.0.0.1:3306), so that nodes in network namespaces reach it
// the way they reach the servers chaos starts itself: at the bridge address.

import { createServer, connect, type Server, type Socket } from 'node:net';

/** Connections open at once through the relay: three nodes' pools and the verdict fit many times. */
const MAX_CONNECTIONS = 256;
const CONNECT_TIMEOUT_MS = 5000;

export class TcpRelay {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #port = 0;

  private constructor(readonly to: { host: string; port: number }) {
    this.#server = createServer((client) => this.#relay(client));
    this.#server.maxConnections = MAX_CONNECTIONS;
  }

  /** Listens on `host`, a free port, relaying every connection to `to`. */
  static async start(host: string, to: { host: string; port: number }): Promise<TcpRelay> {
    const relay = new TcpRelay(to);
    await new Promise<void>((resolve, reject) => {
      relay.#server.once('error', reject);
      relay.#server.listen(0, host, () => {
        relay.#server.off('error', reject);
        resolve();
      });
    });
    relay.#port = (relay.#server.address() as { port: number }).port;
    return relay;
  }

  get port(): number {
    return this.#port;
  }

  #relay(client: Socket): void {
    const upstream = connect({ host: this.to.host, port: this.to.port });
    upstream.setTimeout(CONNECT_TIMEOUT_MS, () => upstream.destroy(new Error('connect timeout')));
    upstream.once('connect', () => upstream.setTimeout(0));
    this.#sockets.add(client).add(upstream);
    // Either side ending or failing ends both: the node's driver sees a closed connection and opens another.
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Stops listening and closes every relayed connection. */
  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
