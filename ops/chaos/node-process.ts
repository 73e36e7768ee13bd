// One `troupe node` of a chaos run: a child process of the built bin with its own data directory,
// started again on that directory after each fault; the ports it prints, its state, its log file.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';

export type NodeState = 'down' | 'starting' | 'up' | 'paused' | 'stopping';

/** A start that did not reach ready; `ended` when the process itself gave up (it may be started again). */
export class NodeStartFailed extends Error {
  constructor(
    readonly node: string,
    readonly why: string,
    readonly ended: boolean,
    message: string,
  ) {
    super(message);
    this.name = 'NodeStartFailed';
  }
}

export interface NodeProcessSpec {
  /** n1, n2, ...: --node-name, and how the run names it. */
  name: string;
  dataDir: string;
  logFile: string;
  /** dist/bin/troupe.js */
  troupeBin: string;
  /** Every flag of `troupe node` but --node-name and --data-dir. */
  args: string[];
  /** The port lines to wait for before the node counts as started, e.g. events.http, ops. */
  ports: string[];
  /** Where its ports are reached (127.0.0.1, or its address in the run's network). */
  address: string;
  /** The network namespace to run it in (`ip netns exec`), if any. */
  netns?: string;
  /** The subcommand of the bin (default node). */
  command?: string;
}

const PORT_LINE = /^troupe:\s+(\S+)\s+\S+:(\d+)\s*$/;
const READY_LINE = /^troupe: node (\S+) ready;/;
const TAIL_LINES = 15;
/** Distinct log messages counted per node (for the digest of a failed run); more are lumped together. */
const DIGEST_MESSAGES = 200;

/** How often a node logged one message, and when last (the line's own time, if it has one). */
interface LoggedMessage {
  count: number;
  level: number;
  last: string;
}

export class NodeProcess {
  readonly spec: NodeProcessSpec;
  state: NodeState = 'down';
  /** The cluster's id of the current process (its leases name it); a restart draws another. */
  nodeId?: string;
  /** The ports of the current process (empty while down). */
  ports: Record<string, number> = {};
  /** Times the process ended without the run asking it to. */
  unexpectedExits = 0;
  /** Called when the process ends without the run asking it to (a crash of the node itself). */
  onUnexpectedExit?: (node: NodeProcess, how: string) => void;

  #proc?: ChildProcess;
  #exited?: Promise<string>;
  #expectingExit = false;
  #log: WriteStream;
  #tail: string[] = [];
  #messages = new Map<string, LoggedMessage>();

  constructor(spec: NodeProcessSpec) {
    this.spec = spec;
    this.#log = createWriteStream(spec.logFile, { flags: 'a' });
  }

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  /** True while the process runs (paused included). */
  get alive(): boolean {
    return this.#proc !== undefined && this.#proc.exitCode === null && this.#proc.signalCode === null;
  }

  /** Starts the process and resolves once it printed its ports and its /readyz answers 200. */
  async start(timeoutMs: number): Promise<void> {
    if (this.alive) throw new Error(`${this.name} is already running (pid ${this.pid})`);
    this.state = 'starting';
    this.ports = {};
    this.nodeId = undefined;
    this.#expectingExit = false;
    this.#note(`starting: node ${this.spec.troupeBin} node --node-name ${this.name} --data-dir ${this.spec.dataDir} ${this.spec.args.join(' ')}`);
    const argv = [this.spec.troupeBin, this.spec.command ?? 'node', '--node-name', this.name, '--data-dir', this.spec.dataDir, ...this.spec.args];
    // ip netns exec execs the command itself, so the pid is the node's and signals reach it.
    const [cmd, args] = this.spec.netns ? ['ip', ['netns', 'exec', this.spec.netns, process.execPath, ...argv]] : [process.execPath, argv];
    const proc = spawn(cmd as string, args as string[], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a Ctrl-C meant for chaos does not reach the nodes, chaos stops them itself.
      detached: true,
    });
    this.#proc = proc;
    // Until start() resolves, an end of this process is start()'s failure, told to its caller (who
    // may start it again), not an exit nobody asked for.
    let starting = true;
    const ended = () => proc.exitCode !== null || proc.signalCode !== null;
    const seen: Record<string, number> = {};
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      this.#log.write(line + '\n');
      this.#remember(line);
      const m = PORT_LINE.exec(line);
      if (m) seen[m[1]!] = Number(m[2]);
      const ready = READY_LINE.exec(line);
      if (ready) this.nodeId = ready[1];
    });
    proc.stdout!.on('data', (d: Buffer) => {
      this.#log.write(d);
      for (const line of d.toString().split('\n')) if (line) this.#remember(line);
    });
    this.#exited = new Promise<string>((resolve) => {
      proc.on('exit', (code, signal) => {
        const how = signal ? `signal ${signal}` : `exit code ${code}`;
        this.#note(`process ${proc.pid} ended: ${how}`);
        if (this.#proc === proc) {
          this.state = 'down';
          this.ports = {};
        }
        if (!this.#expectingExit && this.#proc === proc && !starting) {
          this.unexpectedExits++;
          this.onUnexpectedExit?.(this, how);
        }
        resolve(how);
      });
    });

    const deadline = Date.now() + timeoutMs;
    const failed = (why: string) =>
      new NodeStartFailed(this.name, why, ended(), `${this.name} did not start: ${why}; the last lines of its log (${this.spec.logFile}):\n    ${this.#tail.join('\n    ')}`);
    // The process this call started, not whichever runs under this name now.
    const endedHow = () => `the process ended (${proc.signalCode ? `signal ${proc.signalCode}` : `exit code ${proc.exitCode}`})`;
    try {
      while (!this.spec.ports.every((p) => seen[p] !== undefined)) {
        if (ended()) throw failed(endedHow());
        if (Date.now() > deadline) throw failed(`no ports printed within ${timeoutMs} ms`);
        await sleep(25);
      }
      this.ports = { ...seen };
      for (;;) {
        if (ended()) throw failed(endedHow());
        if (await this.#ready()) break;
        if (Date.now() > deadline) throw failed(`/readyz did not answer 200 within ${timeoutMs} ms`);
        await sleep(100);
      }
    } finally {
      starting = false;
    }
    this.state = 'up';
  }

  async #ready(): Promise<boolean> {
    const port = this.ports['ops'];
    if (port === undefined) return true;
    try {
      const res = await fetch(`http://${this.spec.address}:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      return res.status === 200;
    } catch {
      return false;
    }
  }

  /** SIGKILL; resolves when the process is gone. */
  async kill(): Promise<void> {
    if (!this.alive) return;
    this.#expectingExit = true;
    this.#proc!.kill('SIGKILL');
    await this.#exited;
  }

  /** SIGSTOP: the process keeps its sockets and locks but does nothing. */
  pause(): void {
    if (!this.alive) return;
    this.#proc!.kill('SIGSTOP');
    this.state = 'paused';
    this.#note('SIGSTOP');
  }

  /** SIGCONT. */
  resume(): void {
    if (!this.alive) return;
    this.#proc!.kill('SIGCONT');
    this.state = 'up';
    this.#note('SIGCONT');
  }

  /** Waits until /readyz answers 200 again (after a pause), at most timeoutMs; false if it did not. */
  async waitReady(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.alive) return false;
      if (await this.#ready()) return true;
      await sleep(100);
    }
    return false;
  }

  /** SIGTERM (graceful leave); SIGKILL if it has not exited within timeoutMs. */
  async terminate(timeoutMs: number): Promise<{ how: string; forced: boolean }> {
    if (!this.alive) return { how: 'not running', forced: false };
    this.#expectingExit = true;
    this.state = 'stopping';
    this.#proc!.kill('SIGCONT'); // a paused process would not act on SIGTERM
    this.#proc!.kill('SIGTERM');
    const exited = this.#exited!;
    const timer = sleep(timeoutMs).then(() => 'timeout');
    if ((await Promise.race([exited, timer])) === 'timeout') {
      this.#proc!.kill('SIGKILL');
      return { how: await exited, forced: true };
    }
    return { how: await exited, forced: false };
  }

  /** For exit handlers: kills the process at once, synchronously. */
  killNow(): void {
    if (!this.alive) return;
    this.#expectingExit = true;
    try {
      this.#proc!.kill('SIGKILL');
    } catch {
      // already gone
    }
  }

  closeLog(): Promise<void> {
    return new Promise((resolve) => this.#log.end(() => resolve()));
  }

  #note(text: string): void {
    this.#log.write(`--- chaos ${new Date().toISOString()} ${this.name}: ${text}\n`);
  }

  /**
   * What this node logged over the whole run, one line per message, most frequent first: the
   * digest a failed run prints, so that its cause shows where only the output is kept (CI).
   */
  logDigest(max = 12): string[] {
    const rows = [...this.#messages].sort((a, b) => b[1].level - a[1].level || b[1].count - a[1].count).slice(0, max);
    const more = this.#messages.size - rows.length;
    return [
      ...rows.map(([msg, m]) => `${this.name}: ${m.count}× ${m.level >= 50 ? 'ERROR' : 'warn'} ${msg.length > 160 ? msg.slice(0, 160) + '…' : msg} (last ${m.last})`),
      ...(more > 0 ? [`${this.name}: and ${more} other messages (${this.spec.logFile})`] : []),
    ];
  }

  #remember(line: string): void {
    this.#tail.push(line.length > 400 ? line.slice(0, 400) + '…' : line);
    if (this.#tail.length > TAIL_LINES) this.#tail.shift();
    if (line.startsWith('{')) this.#count(line);
  }

  #count(line: string): void {
    let entry: { msg?: unknown; level?: unknown; time?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      return;
    }
    const msg = typeof entry.msg === 'string' ? entry.msg : '(no message)';
    const last = typeof entry.time === 'number' ? new Date(entry.time).toISOString().slice(11, 23) : typeof entry.time === 'string' ? entry.time.slice(11, 23) : '?';
    const seen = this.#messages.get(msg);
    if (seen) {
      seen.count++;
      seen.last = last;
    } else if (this.#messages.size < DIGEST_MESSAGES) {
      this.#messages.set(msg, { count: 1, level: typeof entry.level === 'number' ? entry.level : 40, last });
    }
  }
}

/**
 * A node that ends while it starts (its Redis is being restarted, or cut off: a node does not start
 * without Redis) is started again, as a supervisor would, this many times in all, a second apart.
 */
const START_ATTEMPTS = 5;
const START_RETRY_MS = 1000;

/**
 * Starts a node that is down; one whose process ends during the start is started again, up to
 * START_ATTEMPTS in all. True once it is up; a failure is said, never thrown.
 */
export async function startAgain(node: NodeProcess, say: (text: string) => Promise<void>, timeoutMs: number, retryMs = START_RETRY_MS): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      await node.start(timeoutMs);
      return true;
    } catch (err) {
      const gaveUp = err instanceof NodeStartFailed && err.ended;
      if (!gaveUp || attempt >= START_ATTEMPTS) {
        await say(`${node.name} did not start again${attempt > 1 ? ` (${attempt} tries)` : ''}: ${(err as Error).message}`);
        return false;
      }
      await say(`${node.name} ended while starting (${(err as NodeStartFailed).why}, try ${attempt} of ${START_ATTEMPTS}); starting it again in ${retryMs / 1000}s`);
      await sleep(retryMs);
    }
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
