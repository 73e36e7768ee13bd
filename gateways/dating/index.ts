// The dating gateway in listen mode: Event Source on 9090 and Event Listener on 9099, one round
// after another, each pair's likes decided by its match-pair actor.

import { createServer, type Server, type Socket } from 'node:net';
import type { Gateway, GatewayHost, Logger, RunningGateway } from '../../runtime/index.js';
import { actorDecider, Round, type PairDecider } from './round.js';
import { DATING_SETTINGS } from './settings.js';

export { Round, actorDecider } from './round.js';
export type { RoundOutcome } from './round.js';

const MATCH_PAIR_MODULE = new URL('../../actors/match-pair.js', import.meta.url).href;

/** A fresh base per process, so round numbers never repeat across restarts of a node. */
export function firstRoundId(): number {
  return (Math.floor(Math.random() * 0x7fff) << 16) >>> 0;
}

export interface DatingServers {
  readonly sourcePort: number;
  readonly listenerPort: number;
  /** The round in progress or waiting for its listener, if any. */
  readonly current: Round | undefined;
  /** Rounds started, and the events and matches of the rounds that ended, since the node started. */
  readonly tally: { rounds: number; events: number; matches: number };
  stop(): Promise<void>;
}

/** Listens for Event Sources and Event Listeners and runs rounds; usable without a Gateway host. */
export async function listenForRounds(options: {
  decider: PairDecider;
  log: Logger;
  host: string;
  sourcePort: number;
  listenerPort: number;
  maxSeq: number;
  sourceIdleMs: number;
  listenerWaitMs?: number;
  /** An Event Listener that came before any round is closed after this long without one (default 30 s). */
  earlyListenerMs?: number;
}): Promise<DatingServers> {
  const { log } = options;
  let nextRound = firstRoundId();
  let current: Round | undefined;
  const tally = { rounds: 0, events: 0, matches: 0 };
  /** A listener that came before any round: it gets the next one. */
  let early: EarlyListener | undefined;
  const sockets = new Set<Socket>();
  const earlyListenerMs = options.earlyListenerMs ?? 30_000;

  /**
   * Reads what it sends (so the close is a FIN, not a reset of unread bytes), ends it, and destroys
   * it if it does not close in a second.
   */
  function turnAway(socket: Socket, why: string): void {
    log.warn({ remote: socket.remoteAddress }, why);
    socket.removeAllListeners('data');
    socket.on('data', () => {});
    socket.resume();
    socket.end();
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  /** Holds an early listener: reads its first bytes (its MATCH BEGIN) and times it out. */
  class EarlyListener {
    #text = '';
    readonly #timer: NodeJS.Timeout;
    readonly #onData = (chunk: Buffer) => {
      this.#text += chunk.toString('latin1');
      if (this.#text.length > 4096) this.drop('an early event listener sent over 4 KiB before any round; closed it');
    };
    constructor(readonly socket: Socket) {
      socket.on('data', this.#onData);
      this.#timer = setTimeout(() => this.drop(`an early event listener saw no round within ${earlyListenerMs} ms; closed it`), earlyListenerMs);
      this.#timer.unref();
      socket.on('close', () => {
        clearTimeout(this.#timer);
        if (early === this) early = undefined;
      });
    }
    drop(why: string): void {
      clearTimeout(this.#timer);
      if (early === this) early = undefined;
      turnAway(this.socket, why);
    }
    /** Stops holding it; what it sent so far is put back for the round's listener to read. */
    take(): Socket {
      clearTimeout(this.#timer);
      this.socket.off('data', this.#onData);
      if (this.#text) this.socket.unshift(Buffer.from(this.#text, 'latin1'));
      return this.socket;
    }
  }

  function track(socket: Socket): void {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  }

  const sourceServer = createServer((socket) => {
    track(socket);
    socket.on('error', (err) => log.debug({ err: err.message }, 'event source socket error'));
    if (current && !current.sourceOver && !current.finished) {
      log.warn({ remote: socket.remoteAddress, round: current.id }, 'a second event source connected during a round; closed it');
      socket.destroy();
      return;
    }
    let handedOver: Socket | undefined;
    if (current && !current.finished) {
      // Its listener, if it has seen nothing yet, came for this new round.
      handedOver = current.releaseFreshListener();
      current.abandon('a new event source connected before the round ended');
    }
    const round = new Round({ id: nextRound++, decider: options.decider, log, maxSeq: options.maxSeq, listenerWaitMs: options.listenerWaitMs });
    current = round;
    tally.rounds++;
    log.info({ round: round.id, remote: socket.remoteAddress }, 'event source connected; round started');
    void round.done.then((outcome) => {
      tally.events += outcome.events;
      tally.matches += outcome.matches;
      if (current === round) current = undefined;
    });
    if (handedOver) round.attachListener(handedOver);
    else if (early) {
      const waiting = early;
      early = undefined;
      if (!waiting.socket.destroyed) round.attachListener(waiting.take());
    }
    socket.setTimeout(options.sourceIdleMs, () => {
      round.sourceClosed(`silent for ${options.sourceIdleMs} ms`);
      socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => round.sourceData(chunk));
    socket.on('close', () => round.sourceClosed('connection closed'));
  });

  const listenerServer = createServer((socket) => {
    track(socket);
    socket.on('error', (err) => log.debug({ err: err.message }, 'event listener socket error'));
    if (current && !current.finished) {
      if (!current.attachListener(socket)) turnAway(socket, `a second event listener connected during round ${current.id}; closed it`);
      return;
    }
    // The newest early listener is the one kept: a stray connection must not lock the real one out.
    early?.drop('a newer event listener connected before any round; closed the older one');
    early = new EarlyListener(socket);
  });

  const listen = (server: Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, options.host, () => {
        server.off('error', reject);
        resolve((server.address() as { port: number }).port);
      });
    });
  const sourcePort = await listen(sourceServer, options.sourcePort);
  const listenerPort = await listen(listenerServer, options.listenerPort).catch(async (err) => {
    sourceServer.close();
    throw err;
  });

  return {
    sourcePort,
    listenerPort,
    get current() {
      return current;
    },
    tally,
    async stop() {
      current?.abandon('the node is stopping');
      const closed = [sourceServer, listenerServer].map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const s of sockets) s.destroy();
      await Promise.all(closed);
    },
  };
}

export const datingGateway: Gateway = {
  name: 'dating',
  actorModules: [MATCH_PAIR_MODULE],
  settings: DATING_SETTINGS,
  async start(host: GatewayHost): Promise<RunningGateway> {
    const log = host.log.child({ gateway: 'dating' });
    const servers = await listenForRounds({
      decider: actorDecider(host.system),
      log,
      host: host.host,
      sourcePort: host.settings['dating-source-port'] as number,
      listenerPort: host.settings['dating-listener-port'] as number,
      maxSeq: host.settings['dating-max-events'] as number,
      sourceIdleMs: host.settings['dating-source-idle'] as number,
      listenerWaitMs: host.settings['dating-listener-wait'] as number,
      earlyListenerMs: host.settings['dating-early-listener-wait'] as number,
    });
    return {
      ports: { source: servers.sourcePort, listener: servers.listenerPort },
      async panel() {
        const { rounds, events, matches } = servers.tally;
        const now = servers.current;
        return [
          { name: 'rounds', value: rounds, kind: 'count' },
          { name: 'events', value: events, kind: 'count' },
          { name: 'matches', value: matches + (now && !now.finished ? now.matchesSoFar.length : 0), kind: 'count' },
          { name: 'round in progress', value: now && !now.finished ? 1 : 0, kind: 'gauge' },
        ];
      },
      stop: () => servers.stop(),
    };
  },
};

export default datingGateway;
