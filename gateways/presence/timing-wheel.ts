// One timing wheel that fires every member once per period (the presence gateway's Ping every
// second), whatever the number of members: one timer for the whole wheel, not one per client.

/**
 * The period is cut into `slots` slots of `period / slots` ms. A member joins the slot the wheel
 * has just fired, so it next fires one full turn later, and then every turn; members spread over
 * the slots by the time they joined. `advance(now)` fires every slot whose time has come, in order,
 * so a late tick catches up instead of skipping slots. The clock is a parameter: tests drive
 * `advance` by hand, and `start()` drives it from a self-correcting timeout on performance.now().
 */
export class TimingWheel<T> {
  readonly periodMs: number;
  readonly tickMs: number;
  readonly #slots: Set<T>[];
  readonly #slotOf = new Map<T, number>();
  readonly #fire: (member: T, nowMs: number) => void;
  readonly #clock: () => number;
  /** Index of the slot fired last, and the (tick-aligned) time it stands for. */
  #cursor: number;
  #cursorMs: number;
  #timer: NodeJS.Timeout | undefined;
  /** Members added while a slot fires wait here, so they do not fire in the turn they joined. */
  #joining: T[] | undefined;
  /** How late the last tick ran after its slot's time (ms), for the gateway's metrics. */
  lastLagMs = 0;

  constructor(options: { periodMs: number; slots: number; fire: (member: T, nowMs: number) => void; clock?: () => number }) {
    if (!Number.isInteger(options.slots) || options.slots < 1) throw new RangeError(`timing wheel: slots must be a positive integer, got ${options.slots}`);
    if (!(options.periodMs > 0)) throw new RangeError(`timing wheel: periodMs must be positive, got ${options.periodMs}`);
    this.periodMs = options.periodMs;
    this.tickMs = options.periodMs / options.slots;
    this.#slots = Array.from({ length: options.slots }, () => new Set<T>());
    this.#fire = options.fire;
    this.#clock = options.clock ?? (() => performance.now());
    const now = this.#clock();
    this.#cursorMs = Math.floor(now / this.tickMs) * this.tickMs;
    this.#cursor = Math.floor(now / this.tickMs) % options.slots;
  }

  get size(): number {
    return this.#slotOf.size;
  }

  has(member: T): boolean {
    return this.#slotOf.has(member);
  }

  /** The member fires one period from now (to within one tick), then every period. */
  add(member: T): void {
    if (this.#slotOf.has(member)) return;
    if (this.#joining) {
      this.#joining.push(member);
      this.#slotOf.set(member, -1);
      return;
    }
    this.#slots[this.#cursor]!.add(member);
    this.#slotOf.set(member, this.#cursor);
  }

  remove(member: T): void {
    const slot = this.#slotOf.get(member);
    if (slot === undefined) return;
    if (slot >= 0) this.#slots[slot]!.delete(member);
    else if (this.#joining) this.#joining.splice(this.#joining.indexOf(member), 1);
    this.#slotOf.delete(member);
  }

  /** Fires every slot due up to `nowMs`. A member removed while its slot fires is not fired. */
  advance(nowMs: number = this.#clock()): void {
    const slots = this.#slots.length;
    // Catch up at most one full turn: after a longer stall every member fires once, not many times.
    if (nowMs - this.#cursorMs > this.periodMs + this.tickMs) {
      const skip = Math.floor((nowMs - this.#cursorMs - this.periodMs) / this.tickMs);
      this.#cursorMs += skip * this.tickMs;
      this.#cursor = (this.#cursor + skip) % slots;
    }
    while (this.#cursorMs + this.tickMs <= nowMs) {
      this.#cursorMs += this.tickMs;
      this.#cursor = (this.#cursor + 1) % slots;
      this.lastLagMs = nowMs - this.#cursorMs;
      const joining: T[] = (this.#joining = []);
      try {
        for (const member of this.#slots[this.#cursor]!) this.#fire(member, nowMs);
      } finally {
        this.#joining = undefined;
        for (const member of joining) {
          this.#slots[this.#cursor]!.add(member);
          this.#slotOf.set(member, this.#cursor);
        }
      }
    }
  }

  /** Drives the wheel from a timer until stop(). The timer does not keep the process alive. */
  start(): void {
    if (this.#timer) return;
    const tick = (): void => {
      this.advance();
      const next = this.#cursorMs + this.tickMs - this.#clock();
      this.#timer = setTimeout(tick, Math.max(0, next));
      this.#timer.unref();
    };
    this.#timer = setTimeout(tick, this.tickMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
