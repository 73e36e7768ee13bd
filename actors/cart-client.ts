// The main-thread face of the cart actors: sends each cart's operations in batches, at most one
// ask in flight per cart. Operations that arrive while a cart's ask is in flight ride the next
// one, so a hot cart commits many AddItems at once instead of one per round trip. A traced batch
// carries the trace of its first operation (the others' traces end at the gateway).

import { currentTrace, inTrace, type ActorSystem } from '../runtime/index.js';
import CartActor from './cart.js';
import type { ItemsChanged } from './catalogue-item-cache.js';
import { CartError, type CartOperation, type CartView, type OperationResult } from './cart-operations.js';

interface Waiting {
  op: CartOperation;
  /** The caller's trace context (tracing on), so the ask that carries this operation is traced. */
  trace: ReturnType<typeof currentTrace>;
  resolve: (view: CartView) => void;
  reject: (err: unknown) => void;
}

interface CartQueue {
  inFlight: boolean;
  waiting: Waiting[];
}

export interface CartClientOptions {
  /** Most operations in one ask. */
  maxBatch?: number;
  askTimeoutMs?: number;
  /** Most operations waiting for one cart before callers are refused. */
  maxWaiting?: number;
}

/** Thrown when one cart already has too many operations waiting. */
export class CartBusy extends Error {
  readonly code = 'CART_BUSY';
  constructor(cart: string, waiting: number) {
    super(`cart ${cart} has ${waiting} operations waiting; retry later`);
    this.name = 'CartBusy';
  }
}

export class CartClient {
  readonly #system: Pick<ActorSystem, 'ref' | 'query'>;
  readonly #queues = new Map<string, CartQueue>();
  readonly #maxBatch: number;
  readonly #maxWaiting: number;
  readonly #askTimeoutMs: number | undefined;

  constructor(system: Pick<ActorSystem, 'ref' | 'query'>, options: CartClientOptions = {}) {
    this.#system = system;
    this.#maxBatch = options.maxBatch ?? 256;
    this.#maxWaiting = options.maxWaiting ?? 10_000;
    this.#askTimeoutMs = options.askTimeoutMs;
  }

  /** Runs one operation on cart `key`; rejects with CartError when refused. */
  run(key: string, op: CartOperation): Promise<CartView> {
    let queue = this.#queues.get(key);
    if (!queue) {
      queue = { inFlight: false, waiting: [] };
      this.#queues.set(key, queue);
    }
    if (queue.waiting.length >= this.#maxWaiting) return Promise.reject(new CartBusy(key, queue.waiting.length));
    const q = queue;
    const trace = currentTrace();
    const done = new Promise<CartView>((resolve, reject) => q.waiting.push({ op, trace, resolve, reject }));
    if (!queue.inFlight) this.#send(key, queue);
    return done;
  }

  /**
   * Tells the cart shards of every member that these items changed or went away, so that no cart
   * prices them from its cache after this resolves (members that do not answer within the query's
   * timeout catch up when their cache entries expire, within seconds).
   */
  async itemsChanged(uuids: readonly string[]): Promise<void> {
    await this.#system.query<number>(CartActor, { itemsChanged: [...uuids] } satisfies ItemsChanged);
  }

  #send(key: string, queue: CartQueue): void {
    const batch = queue.waiting.splice(0, this.#maxBatch);
    if (batch.length === 0) {
      this.#queues.delete(key);
      return;
    }
    queue.inFlight = true;
    let ask: Promise<OperationResult[]>;
    try {
      const options = this.#askTimeoutMs === undefined ? undefined : { timeoutMs: this.#askTimeoutMs };
      ask = inTrace(batch[0]!.trace, () =>
        this.#system.ref(CartActor, key).ask(
          'apply',
          batch.map((w) => w.op),
          options,
        ),
      );
    } catch (err) {
      ask = Promise.reject(err); // Overloaded is thrown at once, not through the promise
    }
    ask.then(
      (results: OperationResult[]) => {
        batch.forEach((w, i) => {
          const r = results[i];
          if (r && 'ok' in r) w.resolve(r.ok);
          else if (r) w.reject(new CartError(r.error.code, r.error.message));
          else w.reject(new Error(`cart ${key} answered ${results.length} results for ${batch.length} operations`));
        });
      },
      (err: unknown) => {
        for (const w of batch) w.reject(err);
      },
    ).finally(() => {
      queue.inFlight = false;
      this.#send(key, queue);
    });
  }
}
