// The project's own Event Source and Event Listener: plays a generated round against a solution,
// either listening (the solution dials in, like the original harness container) or dialling a
// solution that listens, and reports the listener's answer and the time to it.

import { connect, createServer, type Server, type Socket } from 'node:net';
import { MatchChecker, type CheckerAnswer } from './checker.js';
import type { GeneratedRound } from './generator.js';

export interface HarnessResult {
  answer: CheckerAnswer | 'NO ANSWER';
  /** From the source connection to the answer (or to giving up). */
  ms: number;
  matchesExpected: number;
  matchesReceived: number;
  problem?: string;
}

/** Writes a round's bytes, waiting for the socket to drain between chunks. */
async function writeRound(socket: Socket, round: GeneratedRound): Promise<void> {
  for (const chunk of round.chunks) {
    if (socket.destroyed) return;
    if (!socket.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    }
  }
}

/** One round between one source socket and one listener socket, both already connected. */
class RoundReferee {
  readonly #round: GeneratedRound;
  readonly #checker: MatchChecker;
  #listener: Socket | undefined;
  #started = 0;
  #result: HarnessResult | undefined;
  readonly done: Promise<HarnessResult>;
  #resolve!: (r: HarnessResult) => void;
  #timer: NodeJS.Timeout;

  constructor(round: GeneratedRound, timeoutMs: number) {
    this.#round = round;
    this.#checker = new MatchChecker(round.expected);
    this.done = new Promise((r) => (this.#resolve = r));
    this.#timer = setTimeout(() => this.#finish(undefined, `no answer within ${timeoutMs} ms`), timeoutMs);
  }

  source(socket: Socket): void {
    this.#started = performance.now();
    socket.on('error', () => {});
    socket.setNoDelay(true);
    void writeRound(socket, this.#round).then(() => {
      socket.end();
      this.#answer(this.#checker.sourceDone());
    });
  }

  listener(socket: Socket): void {
    this.#listener = socket;
    socket.on('error', () => {});
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    let text = '';
    socket.on('data', (data: string) => {
      text += data;
      let start = 0;
      let nl: number;
      while ((nl = text.indexOf('\n', start)) >= 0) {
        const answer = this.#checker.line(text.slice(start, nl));
        start = nl + 1;
        if (answer) {
          this.#answer(answer);
          return;
        }
      }
      text = text.slice(start);
      if (text.length > 1024) this.#answer(this.#checker.line(text) ?? 'MATCH END - ERROR');
    });
    socket.on('close', () => this.#finish(undefined, `the solution closed the listener connection after ${this.#checker.received} of ${this.#round.expected.length} matches`));
    socket.write('MATCH BEGIN\n');
  }

  #answer(answer: CheckerAnswer | undefined): void {
    if (!answer || this.#result) return;
    this.#listener?.end(answer + '\n');
    this.#finish(answer, this.#checker.problem);
  }

  #finish(answer: CheckerAnswer | undefined, problem?: string): void {
    if (this.#result) return;
    clearTimeout(this.#timer);
    this.#result = {
      answer: answer ?? 'NO ANSWER',
      ms: this.#started ? performance.now() - this.#started : 0,
      matchesExpected: this.#round.expected.length,
      matchesReceived: this.#checker.received,
      problem: answer === 'MATCH END - OK' ? undefined : problem,
    };
    this.#resolve(this.#result);
  }
}

export interface ListeningHarness {
  readonly sourcePort: number;
  readonly listenerPort: number;
  /** Plays `round` with the next source and listener that connect. */
  play(round: GeneratedRound, options?: { timeoutMs?: number }): Promise<HarnessResult>;
  close(): Promise<void>;
}

/** Listens on both ports, like the original harness container; solutions dial in. */
export async function listenAsHarness(options: { host?: string; sourcePort: number; listenerPort: number }): Promise<ListeningHarness> {
  let referee: RoundReferee | undefined;
  const sockets = new Set<Socket>();
  const waiting: { source: Socket[]; listener: Socket[] } = { source: [], listener: [] };
  const accept = (kind: 'source' | 'listener') => (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    if (referee) referee[kind](socket);
    else waiting[kind].push(socket);
  };
  const sourceServer = createServer(accept('source'));
  const listenerServer = createServer(accept('listener'));
  const listen = (server: Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, options.host ?? '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
  const sourcePort = await listen(sourceServer, options.sourcePort);
  const listenerPort = await listen(listenerServer, options.listenerPort);
  return {
    sourcePort,
    listenerPort,
    async play(round, playOptions) {
      const r = new RoundReferee(round, playOptions?.timeoutMs ?? 600_000);
      referee = r;
      for (const s of waiting.listener.splice(0)) r.listener(s);
      for (const s of waiting.source.splice(0)) r.source(s);
      try {
        return await r.done;
      } finally {
        referee = undefined;
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([sourceServer, listenerServer].map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

/** Dials a solution that listens (the challenge text's way): listener first, then the source. */
export async function dialAsHarness(
  round: GeneratedRound,
  options: { host: string; sourcePort: number; listenerPort: number; timeoutMs?: number },
): Promise<HarnessResult> {
  const referee = new RoundReferee(round, options.timeoutMs ?? 600_000);
  const dial = (port: number) =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect(port, options.host, () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
  const listener = await dial(options.listenerPort);
  referee.listener(listener);
  const source = await dial(options.sourcePort);
  referee.source(source);
  const result = await referee.done;
  listener.destroy();
  source.destroy();
  return result;
}
