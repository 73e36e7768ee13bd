// Test helpers for the WHO gateway: a GatewayHost without a running node, and a raw TCP client that
// sends exact bytes and records exact bytes.

import type { ExecutionContext } from 'ava';
import net from 'node:net';
import { Registry } from 'prom-client';
import { LocalMembership, type GatewayHost, type Logger, type Membership, type RunningGateway } from '../../../runtime/index.js';
import { whoGateway, whoSettings } from '../../../gateways/who/index.js';
import { slack, waitFor } from '../../common.js';

export const silentLog: Logger = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLog;
  },
};

let nodes = 0;

export interface StartedWho {
  gateway: RunningGateway;
  port: number;
  nodeId: string;
  metrics: Registry;
  membership: Membership;
}

/**
 * Starts the WHO gateway on port 0 the way a node would, with the given settings over the defaults;
 * the test's teardown stops it, whatever the test did (a failed test must not leave a server open).
 */
export async function startWho(
  t: ExecutionContext,
  settings: Record<string, number> = {},
  options: { membership?: Membership; nodeId?: string } = {},
): Promise<StartedWho> {
  const nodeId = options.nodeId ?? `test-node-${process.pid}-${++nodes}`;
  const membership = options.membership ?? new LocalMembership(nodeId);
  const metrics = new Registry();
  const defaults = Object.fromEntries(whoSettings.map((s) => [s.name, s.default]));
  const host: GatewayHost = {
    system: { nodeId } as GatewayHost['system'],
    membership,
    settings: { ...defaults, 'who-port': 0, ...settings },
    metrics,
    log: silentLog,
    dataDir: '/tmp',
    host: '127.0.0.1',
  };
  const gateway = await whoGateway.start(host);
  t.teardown(() => gateway.stop());
  return { gateway, port: gateway.ports.who!, nodeId, metrics, membership };
}

/** A client that writes exact bytes and keeps every byte it receives. */
export class RawClient {
  readonly socket: net.Socket;
  #chunks: Buffer[] = [];
  #cached: Buffer | undefined = Buffer.alloc(0);
  /** Bytes and line ends received so far, counted as they come (no re-scan per wait). */
  receivedBytes = 0;
  newlines = 0;
  readonly closed: Promise<void>;
  #waiters: Array<() => void> = [];
  isClosed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#cached = undefined;
      this.receivedBytes += chunk.length;
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) this.newlines++;
      this.#wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.#wake();
        resolve();
      }),
    );
  }

  static connect(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: options.allowHalfOpen ?? false });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  get received(): Buffer {
    this.#cached ??= Buffer.concat(this.#chunks);
    this.#chunks = [this.#cached];
    return this.#cached;
  }

  set received(bytes: Buffer) {
    this.#chunks = [bytes];
    this.#cached = bytes;
    this.receivedBytes = bytes.length;
    this.newlines = 0;
    for (let i = bytes.indexOf(10); i >= 0; i = bytes.indexOf(10, i + 1)) this.newlines++;
  }

  text(): string {
    return this.received.toString('latin1');
  }

  write(bytes: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves once `test(text)` holds, or rejects after `timeoutMs` with what arrived so far. */
  async waitFor(test: (text: string) => boolean, timeoutMs = 10_000, what = 'the expected bytes'): Promise<string> {
    await this.#until(() => test(this.text()), timeoutMs, what);
    return this.text();
  }

  async #until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs * slack();
    while (!done()) {
      if (this.isClosed) throw new Error(`connection closed before ${what}; got ${JSON.stringify(this.text())}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.text().slice(0, 500))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits until at least `n` complete lines (`\n`) arrived; returns the text. */
  async lines(n: number, timeoutMs = 10_000): Promise<string> {
    await this.#until(() => this.newlines >= n, timeoutMs, `${n} lines`);
    return this.text();
  }

  /** Waits until at least `n` bytes arrived; returns the text. */
  async bytes(n: number, timeoutMs = 3000): Promise<string> {
    await this.#until(() => this.receivedBytes >= n, timeoutMs, `${n} bytes`);
    return this.text();
  }

  /** Waits for the server to close; returns everything received. */
  async untilClosed(timeoutMs = 10_000): Promise<string> {
    await Promise.race([
      this.closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`server did not close; got ${JSON.stringify(this.text().slice(0, 500))}`)), timeoutMs * slack()).unref()),
    ]);
    return this.text();
  }

  /** Sends one command and returns its reply line (without terminator). Only for a quiet connection. */
  async ask(command: string): Promise<string> {
    const before = this.received.length;
    await this.write(command + '\n');
    await this.waitFor((t) => t.indexOf('\n', before) >= 0, 3000, `a reply to ${command}`);
    const text = this.text();
    const line = text.slice(before, text.indexOf('\n', before));
    this.received = this.received.subarray(text.indexOf('\n', before) + 1);
    return line.replace(/\r$/, '');
  }

  close(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

/** Polls until `probe` returns true (for state that settles asynchronously, like a server seeing a close). */
export function eventually(probe: () => Promise<boolean> | boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  return waitFor(probe, timeoutMs, what, 10);
}

export const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
