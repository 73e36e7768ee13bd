// Asks waiting for a reply. Timeouts are swept from per-timeout FIFOs (entries with one timeout value
// expire in the order they were made), so an ask costs no timer of its own.

import { AskTimeout, fromWireError, type WireError } from './errors.js';

interface PendingAsk {
  resolve(value: unknown): void;
  reject(err: unknown): void;
  target: string;
  handler: string;
}

interface TimeoutLane {
  ids: number[];
  deadlines: number[];
  head: number;
}

const SWEEP_EVERY_MS = 20;

export class PendingAsks {
  #nextId = 1;
  readonly #entries = new Map<number, PendingAsk>();
  readonly #lanes = new Map<number, TimeoutLane>();
  #sweeper: NodeJS.Timeout | undefined;

  get size(): number {
    return this.#entries.size;
  }

  /** Registers an ask; returns its id and the promise its reply settles. */
  create(target: string, handler: string, timeoutMs: number): { id: number; promise: Promise<unknown> } {
    const id = this.#nextId;
    this.#nextId = id >= 0x3fffffff ? 1 : id + 1;
    let entry!: PendingAsk;
    const promise = new Promise<unknown>((resolve, reject) => {
      entry = { resolve, reject, target, handler };
    });
    this.#entries.set(id, entry);
    let lane = this.#lanes.get(timeoutMs);
    if (!lane) {
      lane = { ids: [], deadlines: [], head: 0 };
      this.#lanes.set(timeoutMs, lane);
    }
    lane.ids.push(id);
    lane.deadlines.push(performance.now() + timeoutMs);
    this.#sweeper ??= setInterval(() => this.#sweep(), SWEEP_EVERY_MS).unref();
    return { id, promise };
  }

  /** Settles an ask from a reply; unknown ids (timed out already) are ignored. */
  settle(id: number, ok: boolean, value: unknown): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    this.#entries.delete(id);
    if (ok) entry.resolve(value);
    else entry.reject(fromWireError(value as WireError, entry.target, entry.handler));
  }

  /** Fails an ask that never left (a full queue, say). */
  fail(id: number, err: unknown): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    this.#entries.delete(id);
    entry.reject(err);
  }

  failAll(err: (target: string, handler: string) => Error): void {
    for (const [id, entry] of this.#entries) {
      this.#entries.delete(id);
      entry.reject(err(entry.target, entry.handler));
    }
  }

  #sweep(): void {
    const now = performance.now();
    for (const [timeoutMs, lane] of this.#lanes) {
      let h = lane.head;
      while (h < lane.ids.length && lane.deadlines[h]! <= now) {
        const id = lane.ids[h]!;
        const entry = this.#entries.get(id);
        if (entry) {
          this.#entries.delete(id);
          entry.reject(new AskTimeout(entry.target, entry.handler, timeoutMs));
        }
        h++;
      }
      // Entries answered long ago still sit in the lane until their deadline; compact in bulk.
      if (h === lane.ids.length) {
        lane.ids.length = 0;
        lane.deadlines.length = 0;
        h = 0;
      } else if (h > 4096 && h * 2 > lane.ids.length) {
        lane.ids.splice(0, h);
        lane.deadlines.splice(0, h);
        h = 0;
      }
      lane.head = h;
    }
    if (this.#entries.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      for (const lane of this.#lanes.values()) {
        lane.ids.length = 0;
        lane.deadlines.length = 0;
        lane.head = 0;
      }
    }
  }
}
