// Connect mode: one round against a harness that listens on both ports (the original harness
// container): dial the Event Listener and the Event Source, play the round, report the outcome.

import { connect, type Socket } from 'node:net';
import type { ActorSystem, Logger } from '../../runtime/index.js';
import { firstRoundId } from './index.js';
import { actorDecider, Round, type PairDecider, type RoundOutcome } from './round.js';

export interface ConnectOptions {
  system: ActorSystem;
  log: Logger;
  host: string;
  sourcePort: number;
  listenerPort: number;
  maxSeq: number;
  sourceIdleMs: number;
  /** Who decides the pairs (default: the system's match-pair actors). */
  decider?: PairDecider;
  /** Keep dialling a harness that is not up yet for this long. */
  dialForMs?: number;
}

function dial(host: string, port: number, untilMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = connect(port, host);
      socket.once('connect', () => {
        socket.off('error', retry);
        resolve(socket);
      });
      const retry = (err: Error) => {
        socket.destroy();
        if (Date.now() >= untilMs) reject(new Error(`cannot reach ${host}:${port}: ${err.message}`));
        else setTimeout(attempt, 100);
      };
      socket.once('error', retry);
    };
    attempt();
  });
}

/** Plays one round as a client of both harness ports; resolves with the round's outcome. */
export async function playConnectedRound(options: ConnectOptions): Promise<RoundOutcome> {
  const until = Date.now() + (options.dialForMs ?? 10_000);
  const round = new Round({ id: firstRoundId(), decider: options.decider ?? actorDecider(options.system), log: options.log, maxSeq: options.maxSeq });
  const dialled = await Promise.allSettled([dial(options.host, options.listenerPort, until), dial(options.host, options.sourcePort, until)]);
  const failed = dialled.find((d): d is PromiseRejectedResult => d.status === 'rejected');
  if (failed) {
    for (const d of dialled) if (d.status === 'fulfilled') d.value.destroy();
    throw failed.reason;
  }
  const [listener, source] = dialled.map((d) => (d as PromiseFulfilledResult<Socket>).value) as [Socket, Socket];
  source.on('error', (err) => options.log.warn({ err: err.message }, 'event source connection error'));
  round.attachListener(listener);
  source.setTimeout(options.sourceIdleMs, () => {
    round.sourceClosed(`silent for ${options.sourceIdleMs} ms`);
    source.destroy();
  });
  source.on('data', (chunk: Buffer) => round.sourceData(chunk));
  source.on('close', () => round.sourceClosed('connection closed'));
  // The listener closing without an answer cannot be made good in connect mode: end the round.
  listener.on('close', () => setImmediate(() => round.abandon('the event listener closed without MATCH END')));
  const outcome = await round.done;
  source.destroy();
  listener.destroy();
  return outcome;
}
