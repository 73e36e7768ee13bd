// The events workload of a chaos run: batches of new event ids POSTed to /events/batch on random
// running nodes, paced, with a client's retries (the same batch, same ids, to another node). It
// remembers every id by outcome: acknowledged (a 202), refused (every attempt surely not accepted)
// or ambiguous (some attempt got no answer: it may or may not have been queued).

import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { sleep } from './node-process.js';

export interface LoadTarget {
  node: string;
  /** The node's address (127.0.0.1, or its address in the run's network). */
  host: string;
  port: number;
}

export interface EventLoadOptions {
  /** The nodes that can be sent to now (their events port), read before each attempt. */
  targets(): LoadTarget[];
  eventsPerSecond: number;
  batchSize: number;
  concurrency: number;
  /** Attempts after the first for a batch not acknowledged. */
  retries: number;
  users: number;
}

/** What one attempt came to. */
type Attempt = { outcome: 'acked' | 'refused' | 'ambiguous'; label: string };

/**
 * Past this a request counts as unanswered and its batch goes to another node, as a client would
 * do; a paused node may still queue the first copy when it resumes, so the same ids then enter the
 * queue twice, which is what exactly-once storage has to absorb.
 */
const REQUEST_TIMEOUT_MS = 3000;
const RETRY_DELAY_MS = 50;

export class EventLoad {
  readonly acked = new Set<string>();
  readonly refused = new Set<string>();
  readonly ambiguous = new Set<string>();
  /** Attempts by answer: "202", "503", "ECONNREFUSED", "timeout", ... */
  readonly answers = new Map<string, number>();
  /** Batches acknowledged after an earlier attempt got no answer: their ids may be queued twice. */
  resentAfterNoAnswer = 0;
  readonly #o: EventLoadOptions;
  readonly #agent: Agent;
  #running = false;
  #loops: Promise<void>[] = [];
  #nextSlot = 0;

  constructor(options: EventLoadOptions) {
    this.#o = options;
    this.#agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });
  }

  /** Ids sent in any attempt, whatever came of it. */
  get sent(): number {
    return this.acked.size + this.refused.size + this.ambiguous.size;
  }

  start(): void {
    this.#running = true;
    this.#loops = Array.from({ length: this.#o.concurrency }, () => this.#loop());
  }

  /** Stops sending; resolves once every batch in flight has its outcome. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    this.#agent.destroy();
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      const ids = Array.from({ length: this.#o.batchSize }, () => randomUUID());
      const body = JSON.stringify({
        events: ids.map((id) => ({
          id,
          type: 'user_action',
          source: 'web',
          user_id: `chaos-user-${Math.floor(Math.random() * this.#o.users)}`,
          data: { action: 'click', metadata: { chaos: true } },
        })),
      });
      const outcome = await this.#deliver(body);
      const into = outcome === 'acked' ? this.acked : outcome === 'refused' ? this.refused : this.ambiguous;
      for (const id of ids) into.add(id);
    }
  }

  /** Sends one batch until a 202 or the retries are spent; a batch is sent at least once, even while stopping. */
  async #deliver(body: string): Promise<Attempt['outcome']> {
    let sawAmbiguous = false;
    let last: string | undefined;
    for (let attempt = 0; attempt <= this.#o.retries; attempt++) {
      if (attempt > 0 && !this.#running) break;
      await this.#slot();
      const target = this.#pick(last);
      if (!target) {
        this.#count('no node running');
        await sleep(100);
        continue;
      }
      last = target.node;
      const result = await this.#post(target.host, target.port, body);
      this.#count(result.label);
      if (result.outcome === 'acked') {
        if (sawAmbiguous) this.resentAfterNoAnswer++;
        return 'acked';
      }
      if (result.outcome === 'ambiguous') sawAmbiguous = true;
      await sleep(RETRY_DELAY_MS);
    }
    return sawAmbiguous ? 'ambiguous' : 'refused';
  }

  /** A random target, another than the last one tried when there is a choice. */
  #pick(avoid: string | undefined): LoadTarget | undefined {
    const all = this.#o.targets();
    const others = all.filter((t) => t.node !== avoid);
    const from = others.length > 0 ? others : all;
    return from[Math.floor(Math.random() * from.length)];
  }

  /** Paces the load: one batch per batchSize/rate seconds over all loops; no bursts to catch up. */
  async #slot(): Promise<void> {
    if (this.#o.eventsPerSecond <= 0) return;
    const interval = (1000 * this.#o.batchSize) / this.#o.eventsPerSecond;
    const now = performance.now();
    const at = Math.max(this.#nextSlot, now);
    this.#nextSlot = at + interval;
    if (at > now) await sleep(at - now);
  }

  #count(label: string): void {
    this.answers.set(label, (this.answers.get(label) ?? 0) + 1);
  }

  #post(host: string, port: number, body: string): Promise<Attempt> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (a: Attempt) => {
        if (!done) {
          done = true;
          resolve(a);
        }
      };
      const req = request(
        {
          agent: this.#agent,
          host,
          port,
          method: 'POST',
          path: '/events/batch',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          const status = res.statusCode ?? 0;
          // A refusal's body names why (`overloaded`, `shutting_down`, ...): kept for the counts.
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (status !== 202 && text.length < 4096) text += chunk;
          });
          res.on('end', () => {
            // 202: queued durably. 4xx and 503: the contract says nothing was accepted.
            finish({ outcome: status === 202 ? 'acked' : status === 503 || (status >= 400 && status < 500) ? 'refused' : 'ambiguous', label: status === 202 ? '202' : `${status} ${errorOf(text)}`.trim() });
          });
          res.on('error', () => finish({ outcome: status202(res.statusCode), label: `${res.statusCode} (body cut)` }));
        },
      );
      req.setTimeout(REQUEST_TIMEOUT_MS, () => {
        req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' }));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        const code = err.code ?? err.message;
        // Refused connections never reached a node; anything else may have been queued.
        finish({ outcome: code === 'ECONNREFUSED' ? 'refused' : 'ambiguous', label: code });
      });
      req.end(body);
    });
  }
}

/** The `error` field of a refusal's JSON body, or nothing. */
function errorOf(text: string): string {
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    return typeof error === 'string' ? error : '';
  } catch {
    return '';
  }
}

/** A status line was read but the body broke: a 202 still means queued. */
function status202(status: number | undefined): Attempt['outcome'] {
  return status === 202 ? 'acked' : 'ambiguous';
}
