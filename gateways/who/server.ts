// The WHO TCP server: one Connection per socket, replies in command order, the connection limit, the
// idle timeout, backpressure, and this node's connection count published as a membership gauge.

import net from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import { inServerSpan, type Logger, type Membership } from '../../runtime/index.js';
import { LineReader, type Command, type LineEvent } from './protocol.js';

/** The membership gauge each node publishes; WHO is its sum over the live members. */
export const CONNECTIONS_GAUGE = 'who.connections';

export interface WhoServerOptions {
  /** Bind address. */
  host: string;
  /** 0: any free port. */
  port: number;
  /** The WHERE answer. */
  nodeId: string;
  membership: Membership;
  /** Close a connection that sent nothing for this long; 0: never. */
  idleTimeoutMs: number;
  /** Connections held at once; the next one is told so and closed. */
  maxConnections: number;
  /** Longest accepted line in bytes, terminator excluded. */
  maxLineBytes: number;
  /** A WHO whose cluster count takes longer gets an error line instead of stalling the connection. */
  whoTimeoutMs?: number;
  /** Error lines in a row (bad commands, over-long lines) after which the client is told so and closed (default 16). */
  maxErrorsInRow?: number;
  log: Logger;
  metrics?: Registry;
}

// A client that pipelines without reading gets its socket paused past these, so the server's memory
// per connection stays bounded (the kernel buffers then push back on the client).
const WRITE_HIGH_WATER = 64 * 1024;
const PENDING_HIGH_WATER = 1024;
// How long a connection we are closing may linger before it is destroyed (a peer that never reads).
const CLOSE_GRACE_MS = 2000;

interface WhoMetrics {
  connections: Gauge;
  commands: Counter<'command'>;
  errors: Counter<'reason'>;
}

function makeMetrics(registry: Registry | undefined): WhoMetrics | undefined {
  if (!registry) return undefined;
  return {
    connections: new Gauge({ name: 'troupe_who_connections', help: 'WHO clients connected to this node', registers: [registry] }),
    commands: new Counter({ name: 'troupe_who_commands_total', help: 'WHO protocol commands answered, by command', labelNames: ['command'] as const, registers: [registry] }),
    errors: new Counter({ name: 'troupe_who_errors_total', help: 'WHO error lines sent and connections refused, by reason', labelNames: ['reason'] as const, registers: [registry] }),
  };
}

export class WhoServer {
  readonly #options: Required<Omit<WhoServerOptions, 'metrics'>> & { metrics?: Registry };
  readonly #server: net.Server;
  readonly #connections = new Set<Connection>();
  readonly #metrics: WhoMetrics | undefined;
  #whoInFlight: Promise<string> | undefined;
  #stopping = false;

  constructor(options: WhoServerOptions) {
    this.#options = { whoTimeoutMs: 1000, maxErrorsInRow: 16, ...options };
    this.#metrics = makeMetrics(options.metrics);
    // allowHalfOpen: a client that sends its commands and then shuts its side still gets every reply.
    this.#server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#accept(socket));
  }

  get nodeId(): string {
    return this.#options.nodeId;
  }

  get maxLineBytes(): number {
    return this.#options.maxLineBytes;
  }

  get maxErrorsInRow(): number {
    return this.#options.maxErrorsInRow;
  }

  /** Connections held now (refused ones are not counted). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Binds and returns the port. */
  async listen(): Promise<number> {
    this.#publishCount();
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new Error(`WHO server cannot listen on ${this.#options.host}:${this.#options.port}: ${err.message}`));
      this.#server.once('error', onError);
      this.#server.listen({ host: this.#options.host, port: this.#options.port, backlog: 4096 }, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
    this.#server.on('error', (err) => this.#options.log.error({ err }, 'who server error'));
    return (this.#server.address() as net.AddressInfo).port;
  }

  get listening(): boolean {
    return this.#server.listening;
  }

  /** Stops accepting, answers what each client already sent, tells it the server is going, closes. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const c of this.#connections) c.shutdown('server shutting down');
    const deadline = setTimeout(() => {
      for (const c of this.#connections) c.destroy();
    }, CLOSE_GRACE_MS);
    await closed;
    clearTimeout(deadline);
    this.#connections.clear();
    this.#publishCount();
  }

  /** The cluster-wide count, one membership call shared by every WHO that arrives while it runs. */
  whoCount(): Promise<string> {
    this.#whoInFlight ??= inServerSpan('who.count', undefined, { 'who.gauge': CONNECTIONS_GAUGE }, () => this.#askMembership()).finally(() => {
      this.#whoInFlight = undefined;
    });
    return this.#whoInFlight;
  }

  async #askMembership(): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${this.#options.whoTimeoutMs} ms`)), this.#options.whoTimeoutMs);
      });
      const n = await Promise.race([this.#options.membership.sumGauge(CONNECTIONS_GAUGE), timeout]);
      if (!Number.isFinite(n) || n < 0) throw new Error(`membership returned ${n}`);
      return String(Math.round(n));
    } catch (err) {
      this.#options.log.warn({ err }, 'who: cluster connection count unavailable');
      this.countError('who-unavailable');
      return 'ERR cluster connection count unavailable; try again';
    } finally {
      clearTimeout(timer);
    }
  }

  countCommands(command: Command, n: number): void {
    this.#metrics?.commands.inc({ command }, n);
  }

  countError(reason: string): void {
    this.#metrics?.errors.inc({ reason });
  }

  #accept(socket: net.Socket): void {
    socket.on('error', () => {}); // resets are normal for clients; 'close' follows and does the bookkeeping
    if (this.#stopping || this.#connections.size >= this.#options.maxConnections) {
      this.countError('connection-limit');
      const why = this.#stopping ? 'server shutting down' : `too many connections (limit ${this.#options.maxConnections}); try again later`;
      socket.end(`ERR ${why}\r\n`);
      socket.resume(); // read and drop whatever it sends so its FIN is seen
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
      return;
    }
    const connection = new Connection(socket, this, this.#options.idleTimeoutMs);
    this.#connections.add(connection);
    this.#publishCount();
    socket.once('close', () => {
      this.#connections.delete(connection);
      this.#publishCount();
    });
  }

  #publishCount(): void {
    this.#options.membership.setGauge(CONNECTIONS_GAUGE, this.#connections.size);
    this.#metrics?.connections.set(this.#connections.size);
  }
}

/** One client: parses what it sends, keeps replies in order even when WHO waits on the cluster. */
class Connection {
  readonly #socket: net.Socket;
  readonly #server: WhoServer;
  readonly #reader: LineReader;
  /** Replies ready to write, in order, gathered over one chunk so one chunk costs one write. */
  #out = '';
  /** Replies queued behind a WHO still waiting for the cluster count. */
  #pending: Array<string | Promise<string>> = [];
  #blocked = false;
  /** QUIT, idle, shutdown or the client's FIN: no more commands are read; close after the replies. */
  #closing = false;
  #ended = false;
  #counts = { WHO: 0, WHERE: 0, WHY: 0, QUIT: 0 };
  /** Error lines since the last good command: a client that only sends garbage is closed. */
  #errorsInRow = 0;

  constructor(socket: net.Socket, server: WhoServer, idleTimeoutMs: number) {
    this.#socket = socket;
    this.#server = server;
    this.#reader = new LineReader(server.maxLineBytes);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('drain', () => this.#maybeResume());
    if (idleTimeoutMs > 0) {
      socket.setTimeout(idleTimeoutMs, () => this.shutdown(`idle for ${idleTimeoutMs} ms; closing`));
    }
  }

  /** Stop reading; answer what was already read, then one `ERR <why>` line, then close. */
  shutdown(why: string, reason = why.startsWith('idle') ? 'idle-timeout' : 'shutdown'): void {
    if (this.#closing) return;
    this.#server.countError(reason);
    this.#closing = true;
    this.#socket.pause();
    this.#enqueue(`ERR ${why}${this.#reader.crlf ? '\r\n' : '\n'}`);
    this.#flush();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#closing) return;
    this.#reader.push(chunk, this.#onLine);
    this.#flush();
    this.#countCommands();
  }

  #onEnd(): void {
    if (!this.#closing) {
      this.#reader.end(this.#onLine);
      this.#closing = true;
    }
    this.#flush();
    this.#countCommands();
  }

  readonly #onLine = (event: LineEvent): void => {
    if (this.#closing) return; // after QUIT nothing else is read
    const term = event.crlf ? '\r\n' : '\n';
    if (event.kind === 'error') {
      this.#server.countError(event.message.startsWith('line too long') ? 'line-too-long' : 'bad-command');
      this.#enqueue(`ERR ${event.message}${term}`);
      if (++this.#errorsInRow >= this.#server.maxErrorsInRow) {
        this.shutdown(`${this.#errorsInRow} errors in a row; closing (send WHO, WHERE, WHY or QUIT)`, 'too-many-errors');
      }
      return;
    }
    this.#errorsInRow = 0;
    this.#counts[event.command]++;
    switch (event.command) {
      case 'WHY':
        this.#enqueue('42' + term);
        break;
      case 'WHERE':
        this.#enqueue(this.#server.nodeId + term);
        break;
      case 'WHO':
        this.#enqueue(this.#server.whoCount().then((n) => n + term));
        break;
      case 'QUIT':
        this.#enqueue('BYE' + term);
        this.#closing = true;
        this.#socket.pause();
        break;
    }
  };

  #enqueue(reply: string | Promise<string>): void {
    if (this.#blocked) {
      this.#pending.push(reply);
      if (this.#pending.length > PENDING_HIGH_WATER) this.#socket.pause();
    } else if (typeof reply === 'string') {
      this.#out += reply;
    } else {
      this.#blocked = true;
      this.#pending.push(reply);
      void this.#drainPending();
    }
  }

  /** Waits for the reply at the head of the queue, then moves every ready reply behind it out. */
  async #drainPending(): Promise<void> {
    while (this.#pending.length > 0) {
      const head = this.#pending[0]!;
      // Await first: `#out += await x` would read #out before the await and undo a flush in between.
      const reply = typeof head === 'string' ? head : await head;
      this.#out += reply;
      this.#pending.shift();
    }
    this.#blocked = false;
    this.#flush();
  }

  #flush(): void {
    if (this.#out && !this.#socket.destroyed) {
      this.#socket.write(this.#out);
      this.#out = '';
    }
    if (this.#closing && !this.#blocked && !this.#ended) {
      this.#ended = true;
      this.#socket.end();
      // Read (and drop) until the client's FIN, so the socket closes and stops counting at once.
      this.#socket.resume();
      // A peer that neither reads nor closes must not hold the slot for ever.
      setTimeout(() => this.#socket.destroy(), CLOSE_GRACE_MS).unref();
      return;
    }
    if (this.#socket.writableLength > WRITE_HIGH_WATER) this.#socket.pause();
    else this.#maybeResume();
  }

  #maybeResume(): void {
    if (!this.#closing && this.#socket.isPaused() && this.#socket.writableLength <= WRITE_HIGH_WATER && this.#pending.length <= PENDING_HIGH_WATER) {
      this.#socket.resume();
    }
  }

  #countCommands(): void {
    const c = this.#counts;
    if (c.WHO) this.#server.countCommands('WHO', c.WHO);
    if (c.WHERE) this.#server.countCommands('WHERE', c.WHERE);
    if (c.WHY) this.#server.countCommands('WHY', c.WHY);
    if (c.QUIT) this.#server.countCommands('QUIT', c.QUIT);
    c.WHO = c.WHERE = c.WHY = c.QUIT = 0;
  }
}
