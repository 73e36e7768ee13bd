// Membership: which nodes are alive, and small per-node gauges summed across the live members
// (the WHO service's connection counts). One node alone has a local membership; the cluster
// plugs a Redis-backed one in behind the same interface.

export interface Membership {
  /** This node's id. */
  readonly self: string;
  /** Ids of the nodes believed alive now (always includes self). */
  members(): string[];
  /** Publishes this node's value of a gauge; others see it within their refresh interval. */
  setGauge(name: string, value: number): void;
  /** The gauge summed over live members (a node that died stops counting within detection time). */
  sumGauge(name: string): Promise<number>;
  /** Called when the member list changes. Returns an unsubscribe function. */
  onChange(listener: (members: string[]) => void): () => void;
}

/** A node on its own: the only member is itself. */
export class LocalMembership implements Membership {
  readonly self: string;
  readonly #gauges = new Map<string, number>();

  constructor(self: string) {
    this.self = self;
  }

  members(): string[] {
    return [this.self];
  }

  setGauge(name: string, value: number): void {
    this.#gauges.set(name, value);
  }

  async sumGauge(name: string): Promise<number> {
    return this.#gauges.get(name) ?? 0;
  }

  onChange(): () => void {
    return () => {};
  }
}
