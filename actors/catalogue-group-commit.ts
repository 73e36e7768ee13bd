// Group commit: writes submitted in the same tick (from many cart actors of one shard) are
// flushed together in one transaction, with a bounded number of flushes in flight.

/** What a flush says of each item, in order: undefined when written, the error when refused. */
export type FlushOutcomes = readonly (Error | undefined)[];

interface Pending<T> {
  item: T;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class GroupCommit<T> {
  readonly #flush: (items: T[]) => Promise<FlushOutcomes | void>;
  readonly #keyOf: (item: T) => string;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  #pending: Pending<T>[] = [];
  #inFlight = 0;
  #scheduled = false;

  /**
   * `flush` writes a batch atomically. Two writes of one key never share a batch (the later one
   * waits for the next), so a batch can upsert each row once. It may refuse some items and write
   * the rest, returning an outcome per item; a throw fails the batch (each is then retried alone).
   */
  constructor(flush: (items: T[]) => Promise<FlushOutcomes | void>, keyOf: (item: T) => string, options: { maxInFlight?: number; maxBatch?: number } = {}) {
    this.#flush = flush;
    this.#keyOf = keyOf;
    this.#maxInFlight = options.maxInFlight ?? 2;
    this.#maxBatch = options.maxBatch ?? 500;
  }

  submit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight || this.#pending.length === 0) return;
    this.#scheduled = true;
    // setImmediate lets every turn of this tick submit before the batch is cut.
    setImmediate(() => {
      this.#scheduled = false;
      this.#run();
    });
  }

  #take(): Pending<T>[] {
    const batch: Pending<T>[] = [];
    const keys = new Set<string>();
    const rest: Pending<T>[] = [];
    for (const p of this.#pending) {
      const key = this.#keyOf(p.item);
      if (batch.length < this.#maxBatch && !keys.has(key)) {
        keys.add(key);
        batch.push(p);
      } else {
        rest.push(p);
      }
    }
    this.#pending = rest;
    return batch;
  }

  #run(): void {
    while (this.#inFlight < this.#maxInFlight && this.#pending.length > 0) {
      const batch = this.#take();
      this.#inFlight++;
      void this.#write(batch).finally(() => {
        this.#inFlight--;
        this.#schedule();
      });
    }
  }

  async #write(batch: Pending<T>[]): Promise<void> {
    try {
      settle(batch, await this.#flush(batch.map((p) => p.item)));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // One bad write must not fail its neighbours: retry each alone.
      for (const p of batch) {
        try {
          settle([p], await this.#flush([p.item]));
        } catch (e) {
          p.reject(e);
        }
      }
    }
  }
}

function settle<T>(batch: readonly Pending<T>[], outcomes: FlushOutcomes | void): void {
  batch.forEach((p, i) => {
    const refused = outcomes?.[i];
    if (refused === undefined) p.resolve();
    else p.reject(refused);
  });
}
