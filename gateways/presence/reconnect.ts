// When a presence client tries again: exponential backoff with full jitter, reset by a stream that
// worked. Shared by the grpc-js PresenceClient and the load-test SimulatedClient.

export class ReconnectBackoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  #currentMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(initialMs = 250, maxMs = 10_000) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
    this.#currentMs = initialMs;
  }

  /** A stream worked (it got a Ping): the next failure starts from the shortest wait again. */
  reset(): void {
    this.#currentMs = this.#initialMs;
  }

  /**
   * Runs `reconnect` after a random wait of up to the current backoff, then doubles it (up to the
   * maximum). Full jitter: after a gateway restart, thousands of clients do not come back in one burst.
   */
  schedule(reconnect: () => void): void {
    this.cancel();
    const delay = Math.random() * this.#currentMs;
    this.#currentMs = Math.min(this.#currentMs * 2, this.#maxMs);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      reconnect();
    }, delay);
  }

  cancel(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
