// Test helpers for the dating gateway: an in-process stand-in for the match-pair actors that runs
// the actor's own handler (no shards), and socket plumbing.

import { connect, type Socket } from 'node:net';
import MatchPair, { pairKey, type PairLikes } from '../../../actors/match-pair.js';
import type { PairDecider } from '../../../gateways/dating/round.js';
import type { Logger } from '../../../runtime/index.js';

/** Runs `match-pair`'s `likes` handler on states kept in a Map, one turn at a time, in order. */
export function inProcessPairs(): PairDecider & { activations: number; one(round: number, batch: { lo: number; hi: number; events: number[] }): Promise<number[]> } {
  const states = new Map<string, PairLikes>();
  const decider = {
    activations: 0,
    deliver(round: number, batches: readonly { lo: number; hi: number; events: number[] }[]) {
      return batches.map((batch) => decider.one(round, batch));
    },
    one(round: number, batch: { lo: number; hi: number; events: number[] }) {
      const key = pairKey(batch.lo, batch.hi);
      let state = states.get(key);
      if (!state) {
        decider.activations++;
        state = MatchPair.initialState(key);
      }
      const ctx = { state } as { state: PairLikes };
      const reply = MatchPair.handlers.likes(ctx as never, { round, events: batch.events });
      states.set(key, ctx.state);
      return Promise.resolve(reply);
    },
  };
  return decider;
}

export const quietLog: Logger = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return quietLog;
  },
};

/** A log that keeps its messages, to assert what a bad input was told. */
export function recordingLog(): Logger & { messages: string[] } {
  const messages: string[] = [];
  const log = {
    messages,
    trace() {},
    debug() {},
    info(o: object | string, m?: string) {
      messages.push(m ?? String(o));
    },
    warn(o: object | string, m?: string) {
      messages.push(m ?? String(o));
    },
    error(o: object | string, m?: string) {
      messages.push(m ?? String(o));
    },
    child() {
      return log;
    },
  };
  return log;
}

export function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything a socket receives until it closes. */
export function readAll(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('close', () => resolve(text));
    socket.on('error', () => {});
  });
}

/** Resolves when the socket has received text containing `needle`. */
export function waitFor(socket: Socket, needle: string): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const on = (d: Buffer | string) => {
      text += d.toString();
      if (text.includes(needle)) {
        socket.off('data', on);
        resolve(text);
      }
    };
    socket.on('data', on);
  });
}

export function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}
