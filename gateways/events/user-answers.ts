// Whether the user actors answer this node's asks. A user whose actor did not answer lately is
// "unanswered": batches hand its events off at once instead of waiting for it again, so an
// unreachable partition holds no queue worker; a probe in the background finds when it answers
// again. The recent outcomes tell /health when most asks fail.

export interface UserAnswersOptions {
  /** An ask that changes nothing (recordEvents with no events): whether `user`'s actor answers now. */
  probe(user: string): Promise<void>;
  /** How long an ask may take before it counts as unanswered. */
  askTimeoutMs: number;
  /** How often unanswered users are probed (default 1 s). */
  probeEveryMs?: number;
  /** Unanswered users remembered at most (default 10,000); past it the oldest are asked as usual again. */
  maxUnanswered?: number;
  now?: () => number;
}

/** The span over which /health weighs the outcomes of asks. */
export const ANSWERS_WINDOW_MS = 10_000;
/** Probes started per tick at most, so that thousands of unanswered users cost a bounded trickle of asks. */
const PROBES_PER_TICK = 64;

/** `p`, or a rejection once `ms` have passed without an answer. */
export function answerWithin<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} gave no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export class UserAnswers {
  readonly #o: UserAnswersOptions;
  readonly #now: () => number;
  /** Unanswered users, longest since their last failure first (a Map keeps insertion order), each with whether a probe is out. */
  readonly #unanswered = new Map<string, { probing: boolean }>();
  /** Outcomes per whole second: [second, answered, failed], oldest first, at most the window's. */
  readonly #seconds: [number, number, number][] = [];
  #lastFailure = '';
  #timer?: NodeJS.Timeout;
  #closed = false;

  constructor(options: UserAnswersOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Whether `user`'s actor did not answer lately (its events are then handed off without an ask). */
  unanswered(user: string): boolean {
    return this.#unanswered.has(user);
  }

  /** How many users are unanswered now. */
  get unansweredCount(): number {
    return this.#unanswered.size;
  }

  answered(user: string): void {
    this.#count(1, 0);
    this.#unanswered.delete(user);
  }

  failed(user: string, reason: string): void {
    this.#count(0, 1);
    this.#lastFailure = `user/${user}: ${reason}`;
    if (this.#closed) return;
    // To the end of the order, so that probes take the users in turn.
    const state = this.#unanswered.get(user) ?? { probing: false };
    this.#unanswered.delete(user);
    this.#unanswered.set(user, state);
    if (this.#unanswered.size > (this.#o.maxUnanswered ?? 10_000)) this.#unanswered.delete(this.#unanswered.keys().next().value!);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#probe(), this.#o.probeEveryMs ?? 1000);
      this.#timer.unref();
    }
  }

  /** Why the user actors count as not answering (most asks of the window failed), or undefined. */
  trouble(): string | undefined {
    const from = Math.floor(this.#now() / 1000) - ANSWERS_WINDOW_MS / 1000;
    let answered = 0;
    let failed = 0;
    for (const [second, a, f] of this.#seconds) {
      if (second <= from) continue;
      answered += a;
      failed += f;
    }
    if (failed === 0 || failed < answered) return undefined;
    const waiting = this.#unanswered.size ? `; the events of ${this.#unanswered.size} users wait for their actors` : '';
    return `user actors do not answer: ${failed} of ${answered + failed} asks in the last ${ANSWERS_WINDOW_MS / 1000} s failed (last: ${this.#lastFailure})${waiting}`;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #count(answered: number, failed: number): void {
    const second = Math.floor(this.#now() / 1000);
    const last = this.#seconds.at(-1);
    if (last && last[0] === second) {
      last[1] += answered;
      last[2] += failed;
    } else this.#seconds.push([second, answered, failed]);
    while (this.#seconds.length && this.#seconds[0]![0] <= second - ANSWERS_WINDOW_MS / 1000) this.#seconds.shift();
  }

  #probe(): void {
    if (this.#unanswered.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    let started = 0;
    for (const [user, state] of this.#unanswered) {
      if (started >= PROBES_PER_TICK) break;
      if (state.probing) continue;
      state.probing = true;
      started++;
      answerWithin(this.#o.askTimeoutMs, `user/${user}`, this.#o.probe(user)).then(
        () => this.answered(user),
        (err: unknown) => {
          state.probing = false;
          this.failed(user, err instanceof Error ? err.message : String(err));
        },
      );
    }
  }
}
