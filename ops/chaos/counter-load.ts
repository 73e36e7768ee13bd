// The counters workload of a chaos run: increments of the durable chaos counters, each an ask with a
// sequence number of its own, over HTTP to random running nodes. Not retried (an increment is not
// idempotent); each is acknowledged (200, with the reply of the activation that applied it),
// refused (400, or a refused connection) or ambiguous (anything else: it may have been applied).

import { Agent, request } from 'node:http';
import type { CounterState, IncrementReply } from './counter-actor.js';
import type { LoadTarget } from './event-load.js';
import { readBack, type ReadBackMisses } from './read-back.js';
import { sleep } from './node-process.js';

export interface CounterLoadOptions {
  targets(): LoadTarget[];
  addsPerSecond: number;
  concurrency: number;
  counters: number;
}

/** An acknowledged increment: which counter, its sequence number, and what the activation said. */
export interface AckedIncrement extends IncrementReply {
  key: string;
  seq: number;
}

const CALL_TIMEOUT_MS = 6000;

export class CounterLoad {
  readonly keys: string[];
  readonly acked: AckedIncrement[] = [];
  readonly refused = new Set<number>();
  readonly ambiguous = new Set<number>();
  readonly answers = new Map<string, number>();
  #seq = 0;
  #running = false;
  #loops: Promise<void>[] = [];
  #nextSlot = 0;
  readonly #agent: Agent;
  readonly #o: CounterLoadOptions;

  constructor(o: CounterLoadOptions) {
    this.#o = o;
    this.keys = Array.from({ length: o.counters }, (_, i) => `c${i}`);
    this.#agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  }

  /** Sequence numbers handed out so far (every one sent once). */
  get sent(): number {
    return this.#seq;
  }

  start(): void {
    this.#running = true;
    this.#loops = Array.from({ length: this.#o.concurrency }, () => this.#loop());
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    this.#agent.destroy();
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      if (this.#o.addsPerSecond > 0) {
        const now = performance.now();
        const at = Math.max(this.#nextSlot, now);
        this.#nextSlot = at + 1000 / this.#o.addsPerSecond;
        if (at > now) await sleep(at - now);
      }
      const targets = this.#o.targets();
      const target = targets[Math.floor(Math.random() * targets.length)];
      if (!target) {
        await sleep(100);
        continue;
      }
      const key = this.keys[Math.floor(Math.random() * this.keys.length)]!;
      const seq = this.#seq++;
      const r = await this.#post(target, key, seq);
      this.answers.set(r.label, (this.answers.get(r.label) ?? 0) + 1);
      if (r.reply) this.acked.push({ key, seq, ...r.reply });
      else if (r.refused) this.refused.add(seq);
      else this.ambiguous.add(seq);
    }
  }

  #post(target: LoadTarget, key: string, seq: number): Promise<{ reply?: IncrementReply; refused?: boolean; label: string }> {
    const body = JSON.stringify({ seq });
    return new Promise((resolve) => {
      let done = false;
      const finish = (v: { reply?: IncrementReply; refused?: boolean; label: string }) => {
        if (!done) {
          done = true;
          resolve(v);
        }
      };
      const req = request({ agent: this.#agent, host: target.host, port: target.port, method: 'POST', path: `/counters/${key}/add`, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < 4096) text += c;
        });
        res.on('end', () => {
          if (res.statusCode === 200) {
            try {
              return finish({ reply: JSON.parse(text) as IncrementReply, label: '200' });
            } catch {
              return finish({ label: '200 (body unreadable)' });
            }
          }
          let error = '';
          try {
            error = String((JSON.parse(text) as { error?: unknown }).error ?? '');
          } catch {
            // no JSON body
          }
          finish({ refused: res.statusCode === 400, label: `${res.statusCode} ${error}`.trim() });
        });
        res.on('error', () => finish({ label: `${res.statusCode} (body cut)` }));
      });
      req.setTimeout(CALL_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
      req.on('error', (err: NodeJS.ErrnoException) => finish({ refused: err.code === 'ECONNREFUSED', label: err.code ?? err.message }));
      req.end(body);
    });
  }
}

/** Every counter's state, asked of the running nodes in turn (undefined: no node answered), and why those unread were not. */
export async function readCounters(keys: readonly string[], targets: () => LoadTarget[], endsAt = Infinity, requestTimeoutMs = 5000): Promise<{ values: Map<string, CounterState | undefined>; misses: ReadBackMisses }> {
  return readBack(keys, targets, { path: (key) => `/counters/${key}`, parse: (body) => body as CounterState }, { endsAt, attempts: 4, requestTimeoutMs });
}
