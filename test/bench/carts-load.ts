// The carts bench's child process (forked by test/bench/carts.ts as dist/test/bench/carts-load.js):
// either the AddItem load generator or the Get latency prober, over the lean hand-framed gRPC
// client of carts-wire.ts. It takes commands from the parent over IPC and answers each with a
// result (calls, OK calls, failures by code, wall and CPU time of this process, latency quantiles):
//   - closed: `total` AddItems with `concurrency` in flight, cart i*stride (or one hot cart);
//   - open:   AddItems sent on a schedule (`rate` per second for `seconds`), whatever the replies do;
//   - probe:  Gets of random existing carts, about `rate` per second, timed from send to reply.
// It exits when the parent goes away ('disconnect'), so an interrupted bench leaves nothing behind.

import { ADD_ITEM_PATH, addItemFrame, GET_PATH, getFrame, UnaryClient, type Outcome } from './carts-wire.js';

export interface LoadSetup {
  cmd: 'setup';
  address: string;
  token: string;
  items: string[];
  carts: string[];
  sessions: number;
}

export type LoadCommand =
  | LoadSetup
  | { cmd: 'closed'; total: number; concurrency: number; stride: number; hot?: string }
  | { cmd: 'open'; rate: number; seconds: number; stride: number }
  | { cmd: 'probe'; rate: number; seconds: number; delayMs: number }
  | { cmd: 'stop' };

export interface LoadResult {
  /** Calls sent, and those that came back OK. */
  calls: number;
  ok: number;
  /** Failed calls by outcome ('UNAVAILABLE', 'STREAM_RESET', ...). */
  failures: Record<string, number>;
  /** From the phase's start to its last reply. */
  wallMs: number;
  /** This process's CPU (user + system) over the phase. */
  cpuMs: number;
  /** Latency of OK calls in ms (open: from the scheduled send time; probe: from the send). */
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  /** How late calls left against their schedule (open loop, probe): this process's own delay. */
  sendLagP99Ms?: number;
  sendLagMaxMs?: number;
  /** Most calls in flight at once (open loop). */
  maxInFlight?: number;
  /** Calls still unanswered when the phase gave up waiting (counted as failures too). */
  abandoned?: number;
}

/** A phase that has not finished after this long is ended: its calls in flight are failures. */
const PHASE_LIMIT_MS = 120_000;
/** After an open-loop schedule ends, how long its last calls may take to come back. */
const DRAIN_LIMIT_MS = 30_000;

let client: UnaryClient | undefined;
let setup: LoadSetup | undefined;

function quantile(sorted: Float64Array, q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! : NaN;
}

/** Counts outcomes and keeps OK latencies of one phase. */
class Tally {
  calls = 0;
  ok = 0;
  inFlight = 0;
  maxInFlight = 0;
  readonly failures: Record<string, number> = {};
  #latencies: Float64Array;
  #n = 0;
  #lags: Float64Array;
  #nLags = 0;
  readonly #cpu = process.cpuUsage();
  readonly started = performance.now();
  lastReply = this.started;

  constructor(expected = 0) {
    this.#latencies = new Float64Array(Math.max(16, expected));
    this.#lags = new Float64Array(expected);
  }

  /** A call sent; `lagMs`: how long after its scheduled time (scheduled phases). */
  sent(lagMs?: number): void {
    this.calls++;
    if (lagMs !== undefined && this.#nLags < this.#lags.length) this.#lags[this.#nLags++] = lagMs;
    if (++this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
  }

  done(outcome: Outcome, latencyMs?: number): void {
    this.inFlight--;
    this.lastReply = performance.now();
    if (outcome !== 'OK') {
      this.failures[outcome] = (this.failures[outcome] ?? 0) + 1;
      return;
    }
    this.ok++;
    if (latencyMs === undefined) return;
    if (this.#n === this.#latencies.length) {
      const bigger = new Float64Array(this.#n * 2);
      bigger.set(this.#latencies);
      this.#latencies = bigger;
    }
    this.#latencies[this.#n++] = latencyMs;
  }

  result(abandoned = 0): LoadResult {
    const used = process.cpuUsage(this.#cpu);
    if (abandoned) this.failures['ABANDONED'] = (this.failures['ABANDONED'] ?? 0) + abandoned;
    const r: LoadResult = { calls: this.calls, ok: this.ok, failures: this.failures, wallMs: this.lastReply - this.started, cpuMs: (used.user + used.system) / 1000 };
    if (this.#n > 0) {
      const sorted = this.#latencies.subarray(0, this.#n).sort();
      Object.assign(r, { p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99), maxMs: sorted[sorted.length - 1] });
    }
    if (this.#nLags > 0) {
      const sorted = this.#lags.subarray(0, this.#nLags).sort();
      Object.assign(r, { sendLagP99Ms: quantile(sorted, 0.99), sendLagMaxMs: sorted[sorted.length - 1] });
    }
    if (abandoned) r.abandoned = abandoned;
    return r;
  }
}

/** Resolves when `finished()` holds (checked after each reply and every 100 ms), or after `limitMs`. */
function waitUntil(finished: () => boolean, limitMs: number, poke: { wake?: () => void }): Promise<boolean> {
  return new Promise((resolve) => {
    if (finished()) return resolve(true);
    const end = (ok: boolean) => {
      clearInterval(check);
      clearTimeout(limit);
      poke.wake = undefined;
      resolve(ok);
    };
    poke.wake = () => {
      if (finished()) end(true);
    };
    const check = setInterval(() => poke.wake?.(), 100);
    const limit = setTimeout(() => end(false), limitMs);
  });
}

/** Ends a phase that timed out: every call in flight is abandoned, the sessions are made again. */
function abandon(tally: Tally, c: UnaryClient): number {
  const left = tally.inFlight;
  tally.inFlight = 0;
  c.destroy();
  return left;
}

async function closed(c: UnaryClient, s: LoadSetup, total: number, concurrency: number, stride: number, hot: string | undefined): Promise<LoadResult> {
  const tally = new Tally();
  const poke: { wake?: () => void } = {};
  let next = 0;
  let live = true;
  const issue = () => {
    const i = next++;
    const cart = hot ?? s.carts[(i * stride) % s.carts.length]!;
    tally.sent();
    c.call(ADD_ITEM_PATH, addItemFrame(cart, s.items[i % s.items.length]!, 1), (outcome) => {
      if (!live) return;
      tally.done(outcome);
      if (next < total) issue();
      else if (tally.inFlight === 0) poke.wake?.();
    });
  };
  for (let k = 0; k < Math.min(concurrency, total); k++) issue();
  const finished = await waitUntil(() => tally.inFlight === 0 && next >= total, PHASE_LIMIT_MS, poke);
  live = false;
  return tally.result(finished ? 0 : abandon(tally, c));
}

/**
 * Sends `rate` calls a second for `seconds` on a schedule, whatever the replies do, call i being
 * `callOf(i)` (its path and frame) and due at i/rate seconds from the start. The sender wakes when
 * the next call is due, but at most once every `minGapMs` (then it sends every call that is due),
 * so how late each call left (recorded) is this process's own lateness plus at most that gap. A
 * call's latency runs from its scheduled time when `fromSchedule` (so a late sender shows in the
 * figures), else from its send. Waits for the replies, at most DRAIN_LIMIT_MS, and returns the
 * tally (its result taken, abandoned calls counted).
 */
async function onSchedule(
  c: UnaryClient,
  rate: number,
  seconds: number,
  minGapMs: number,
  callOf: (i: number) => [path: string, frame: Buffer],
  fromSchedule: boolean,
): Promise<{ tally: Tally; result: LoadResult }> {
  const expected = Math.ceil(rate * seconds);
  const tally = new Tally(expected);
  const poke: { wake?: () => void } = {};
  let live = true;
  let sent = 0;
  const t0 = tally.started;
  const scheduledAt = (i: number) => t0 + (i / rate) * 1000;
  await new Promise<void>((resolve) => {
    const wake = () => {
      const woke = performance.now();
      // Calls 0 .. floor(elapsed * rate) are due.
      const due = Math.min(expected, Math.floor(((woke - t0) / 1000) * rate) + 1);
      for (; sent < due; sent++) {
        const [path, frame] = callOf(sent);
        const scheduled = scheduledAt(sent);
        const at = performance.now();
        tally.sent(at - scheduled);
        const from = fromSchedule ? scheduled : at;
        c.call(path, frame, (outcome) => {
          if (!live) return;
          tally.done(outcome, performance.now() - from);
          if (tally.inFlight === 0) poke.wake?.();
        });
      }
      if (sent >= expected) return resolve();
      // Timers count whole milliseconds: round up, so a wake is never early.
      setTimeout(wake, Math.max(minGapMs - (performance.now() - woke), Math.ceil(scheduledAt(sent) - performance.now()), 1));
    };
    setTimeout(wake, minGapMs);
  });
  const finished = await waitUntil(() => tally.inFlight === 0, DRAIN_LIMIT_MS, poke);
  live = false;
  return { tally, result: tally.result(finished ? 0 : abandon(tally, c)) };
}

/** AddItems of cart i*stride, sent in bursts at most every 2 ms; latency from the scheduled time. */
async function open(c: UnaryClient, s: LoadSetup, rate: number, seconds: number, stride: number): Promise<LoadResult> {
  const { tally, result } = await onSchedule(
    c,
    rate,
    seconds,
    2,
    (i) => [ADD_ITEM_PATH, addItemFrame(s.carts[(i * stride) % s.carts.length]!, s.items[i % s.items.length]!, 1)],
    true,
  );
  result.maxInFlight = tally.maxInFlight;
  return result;
}

/** Gets of random carts after `delayMs`, a wake per call; latency from the send. */
async function probe(c: UnaryClient, s: LoadSetup, rate: number, seconds: number, delayMs: number): Promise<LoadResult> {
  await new Promise((r) => setTimeout(r, delayMs));
  const randomCart = () => s.carts[Math.floor(Math.random() * s.carts.length)]!;
  return (await onSchedule(c, rate, seconds, 0, () => [GET_PATH, getFrame(randomCart())], false)).result;
}

async function handle(msg: LoadCommand): Promise<LoadResult | { ready: true } | undefined> {
  switch (msg.cmd) {
    case 'setup':
      client?.close(); // a new setup points the child at another server
      setup = msg;
      client = new UnaryClient(msg.address, msg.token, msg.sessions);
      await client.connect();
      return { ready: true };
    case 'closed':
      return closed(client!, setup!, msg.total, msg.concurrency, msg.stride, msg.hot);
    case 'open':
      return open(client!, setup!, msg.rate, msg.seconds, msg.stride);
    case 'probe':
      return probe(client!, setup!, msg.rate, msg.seconds, msg.delayMs);
    case 'stop':
      client?.close();
      process.disconnect?.();
      setTimeout(() => process.exit(0), 200).unref();
      return undefined;
  }
}

if (process.send) {
  process.on('disconnect', () => process.exit(0));
  process.on('message', (msg: LoadCommand) => {
    handle(msg).then(
      (reply) => {
        if (reply !== undefined && process.connected) process.send!(reply);
      },
      (err: unknown) => {
        if (process.connected) process.send!({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      },
    );
  });
}
