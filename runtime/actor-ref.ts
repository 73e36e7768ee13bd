// ActorRef: a value naming one virtual actor (`type/key`) that can tell and ask it, wherever it lives.

import type { AnyActorDefinition, AskOptions, HandlerName, MessageOf, ReplyOf } from './actor.js';

/** What a reference sends through: the node's router on the main thread, or a shard's. */
export interface MessageSender {
  tell(id: string, partition: number, handler: string, message: unknown): void;
  ask(id: string, partition: number, handler: string, message: unknown, timeoutMs?: number): Promise<unknown>;
}

export class ActorRef<D extends AnyActorDefinition = AnyActorDefinition> {
  /** `type/key` */
  readonly id: string;
  readonly partition: number;
  readonly #sender: MessageSender;

  constructor(id: string, partition: number, sender: MessageSender) {
    this.id = id;
    this.partition = partition;
    this.#sender = sender;
  }

  get type(): string {
    return this.id.slice(0, this.id.indexOf('/'));
  }

  get key(): string {
    return this.id.slice(this.id.indexOf('/') + 1);
  }

  /** Fire-and-forget; throws Overloaded at once when the path to the actor is full. */
  tell<K extends HandlerName<D>>(handler: K, message?: MessageOf<D, K>): void {
    this.#sender.tell(this.id, this.partition, handler, message);
  }

  /** Request-reply; the promise settles with the handler's return value or its error. */
  ask<K extends HandlerName<D>>(handler: K, message?: MessageOf<D, K>, options?: AskOptions): Promise<ReplyOf<D, K>> {
    return this.#sender.ask(this.id, this.partition, handler, message, options?.timeoutMs) as Promise<ReplyOf<D, K>>;
  }

  toString(): string {
    return this.id;
  }

  /** A reference travels as its id; `ref(id)` on the other side makes it live again. */
  toJSON(): string {
    return this.id;
  }
}
