// Reading the cluster's answers back once the load has stopped (user summaries, counter states):
// each key asked of the live nodes in turn, a few keys at once, every request and the whole read
// bounded in time. One partition that does not answer costs its own keys' attempts, not everyone's.

import type { LoadTarget } from './event-load.js';

export interface ReadBackOptions {
  /** performance.now() past which no request starts; keys not read by then stay undefined. */
  endsAt: number;
  /** Tries per key, each on the next live node. */
  attempts: number;
  /** Keys read at the same time. */
  parallel?: number;
  /** One request's time limit. */
  requestTimeoutMs?: number;
}

/** What went wrong with the keys left unread, by reason (a status, a timeout, a socket error). */
export type ReadBackMisses = Map<string, number>;

/**
 * `path(key)` fetched from the live targets, `parse` of a 200 body kept per key (undefined: no node
 * answered 200 in its attempts). Every response body is read to its end, so no socket is held.
 */
export async function readBack<T>(
  keys: readonly string[],
  targets: () => LoadTarget[],
  request: { path: (key: string) => string; headers?: Record<string, string>; parse: (body: unknown) => T },
  o: ReadBackOptions,
): Promise<{ values: Map<string, T | undefined>; misses: ReadBackMisses }> {
  const values = new Map<string, T | undefined>();
  const misses: ReadBackMisses = new Map();
  const miss = (why: string) => misses.set(why, (misses.get(why) ?? 0) + 1);
  const timeoutMs = o.requestTimeoutMs ?? 5000;
  let turn = 0;
  let next = 0;
  const reader = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      let value: T | undefined;
      let lastMiss = 'no time left to ask';
      for (let attempt = 0; attempt < o.attempts && value === undefined && performance.now() < o.endsAt; attempt++) {
        const live = targets();
        const target = live[turn++ % Math.max(1, live.length)];
        if (!target) {
          lastMiss = 'no node running';
          break;
        }
        try {
          const res = await fetch(`http://${target.host}:${target.port}${request.path(key)}`, { headers: request.headers ?? {}, signal: AbortSignal.timeout(timeoutMs) });
          const body = await res.text();
          if (res.ok) value = request.parse(JSON.parse(body) as unknown);
          else lastMiss = `${res.status} ${(/"(?:error|code)"\s*:\s*"([^"]{1,60})"/.exec(body)?.[1] ?? '').trim()}`.trim();
        } catch (err) {
          const e = err as Error & { cause?: { code?: string } };
          lastMiss = e.name === 'TimeoutError' ? `no answer in ${timeoutMs / 1000} s` : (e.cause?.code ?? e.message);
        }
      }
      if (value === undefined) miss(lastMiss);
      values.set(key, value);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.parallel ?? 8, keys.length)) }, reader));
  // Keys in the order given, whatever order the readers finished them in.
  return { values: new Map(keys.map((k) => [k, values.get(k)])), misses };
}

/** "12 no answer in 5 s, 3 503 PartitionUnavailable": what a read-back could not read, for the progress lines. */
export function describeMisses(misses: ReadBackMisses): string {
  return [...misses].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([why, n]) => `${n} ${why}`).join(', ');
}
