// The main thread's path for messages whose partition this node does not serve now: buffered
// while the partition is moving, forwarded to its owner otherwise, with the ask ids mapped both
// ways so that replies find their asker (the main thread, a shard, or another node).

import { MAIN_ORIGIN, MSG_STRIDE, NO_REPLY, REPLY_STRIDE } from '../envelope.js';
import { Overloaded, PartitionUnavailable, PeerGone, PeerUnreachable, toWireError } from '../errors.js';
import type { Logger } from '../log.js';
import { partitionOf } from '../partition.js';
import type { RemotePath } from '../router.js';
import type { PartitionOwnership } from './partition-ownership.js';
import type { RedisRing } from './redis-ring.js';
import type { ClusterTransport } from './transport.js';

/** What the routing needs of the node's Router. */
export interface LocalDelivery {
  deliverLocal(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void;
  settleMain(askId: number, ok: boolean, value: unknown): void;
  replyToShard(shard: number, askId: number, ok: boolean, value: unknown): void;
}

interface OutboundAsk {
  origin: number;
  askId: number;
  at: number;
  /** The node it was forwarded to. */
  peer: string;
}

interface ProxiedAsk {
  peer: string;
  remoteAskId: number;
}

export interface ClusterRoutingOptions {
  self: string;
  ownership: PartitionOwnership;
  ring: RedisRing;
  local: LocalDelivery;
  log: Logger;
  /** Messages held for moving partitions, in all, before senders get Overloaded. Default 100,000. */
  bufferCapacity?: number;
  /** Asks forwarded and not answered are forgotten after this long (their askers time out first). Default 10 min. */
  forgetAfterMs?: number;
  /** Answers requests addressed to this node itself (`$node/<id>`), such as view queries. */
  nodeRequest?(handler: string, payload: unknown): Promise<unknown>;
  /**
   * Whether a node is a live member now. A partition whose ring owner is not (it died, and the ring
   * has not moved its partitions yet) holds its messages until it has a live owner, rather than
   * sending them down a link to a dead node. Default: every node is.
   */
  isMember?(peer: string): boolean;
  /**
   * Whether a node can be reached from here now (reachability.ts). Asks for a partition whose owner
   * cannot fail at once with PEER_UNREACHABLE (retryable) instead of waiting out their timeout;
   * tells wait for the partition to move. Default: every node can.
   */
  isReachable?(peer: string): boolean;
}

/** Node-level requests travel as messages to `$node/<node id>`, on partition 0, answered by the node. */
const NODE_PREFIX = '$node/';

/** Replies and redirects refused because they came from a node the ask did not go to: logged at most this often. */
const FORGED_LOG_EVERY_MS = 1000;

export class ClusterRouting implements RemotePath {
  readonly #o: ClusterRoutingOptions;
  #transport: ClusterTransport | undefined;
  readonly #outbound = new Map<number, OutboundAsk>();
  #nextOut = 1;
  readonly #proxies = new Map<number, ProxiedAsk>();
  #nextProxy = -1;
  /** Per partition: messages waiting for it to settle (MSG_STRIDE values each, in local form). */
  readonly #buffers = new Map<number, unknown[]>();
  #buffered = 0;
  readonly #capacity: number;
  readonly #sweeper: NodeJS.Timeout;
  /** Replies (and redirected asks) that came from a node other than the one the ask went to. */
  #forged = 0;
  #forgedLoggedAt = 0;
  #forgedUnlogged = 0;

  constructor(o: ClusterRoutingOptions) {
    this.#o = o;
    this.#capacity = o.bufferCapacity ?? 100_000;
    const forgetAfter = o.forgetAfterMs ?? 600_000;
    this.#sweeper = setInterval(() => {
      // Messages held for a partition whose owner is elsewhere get another chance (a ring change
      // may name a new owner without this node's own state changing), and old forwarded asks go.
      for (const p of [...this.#buffers.keys()]) if (this.#o.ownership.state(p) !== 'acquiring' && this.#o.ownership.state(p) !== 'releasing') this.drain([p]);
      const cutoff = Date.now() - forgetAfter;
      for (const [id, ask] of this.#outbound) {
        if (ask.at > cutoff) break;
        this.#outbound.delete(id);
      }
    }, 200).unref();
  }

  attach(transport: ClusterTransport): void {
    this.#transport = transport;
  }

  get buffered(): number {
    return this.#buffered;
  }

  // ---- from this node ----------------------------------------------------------------------

  route(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    const state = this.#o.ownership.state(partition);
    if (state === 'serving') {
      this.#o.local.deliverLocal(id, partition, handler, payload, origin, askId);
      return;
    }
    // Nobody can serve it until Redis answers (or an operator acts): asks fail now, tells wait.
    if (state === 'unavailable' && origin !== NO_REPLY) throw new PartitionUnavailable(id, partition, this.#o.self, this.#o.ownership.unavailableWhy());
    const owner = state === 'elsewhere' ? this.#o.ownership.ownerOf(partition) : '';
    if (owner === '' || owner === this.#o.self || this.#transport === undefined || this.#o.isMember?.(owner) === false) {
      this.#hold(id, partition, handler, payload, origin, askId);
      return;
    }
    if (this.#o.isReachable?.(owner) === false) {
      if (origin !== NO_REPLY) throw new PeerUnreachable(owner);
      this.#hold(id, partition, handler, payload, origin, askId);
      return;
    }
    let outAsk = 0;
    if (origin !== NO_REPLY) {
      outAsk = this.#nextOut;
      this.#nextOut = outAsk >= 0x3fffffff ? 1 : outAsk + 1;
      this.#outbound.set(outAsk, { origin, askId, at: Date.now(), peer: owner });
    }
    try {
      this.#transport.send(owner, id, partition, handler, payload, outAsk === 0 ? NO_REPLY : MAIN_ORIGIN, outAsk);
    } catch (err) {
      if (outAsk !== 0) this.#outbound.delete(outAsk);
      throw err;
    }
  }

  /** A request to another node itself (not to an actor); the reply settles `askId` like an ask's. */
  sendToNode(peer: string, handler: string, payload: unknown, origin: number, askId: number): void {
    const outAsk = this.#nextOut;
    this.#nextOut = outAsk >= 0x3fffffff ? 1 : outAsk + 1;
    this.#outbound.set(outAsk, { origin, askId, at: Date.now(), peer });
    // The partition is the id's like any other (the receiver checks it); the receiver answers it itself.
    const id = NODE_PREFIX + peer;
    this.#transport!.send(peer, id, partitionOf(id, this.#transport!.partitions), handler, payload, MAIN_ORIGIN, outAsk);
  }

  /**
   * A node left the membership (died, or left without answering): the asks forwarded to it fail at
   * once, rather than when their askers' timeouts run out. Whether they were handled is unknown.
   */
  peerGone(peer: string): void {
    for (const [id, ask] of this.#outbound) {
      if (ask.peer !== peer) continue;
      this.#outbound.delete(id);
      this.#answer(ask.origin, ask.askId, false, toWireError(new PeerGone(peer)));
    }
  }

  /** A node cannot be reached now: the asks forwarded to it fail at once (retryable) rather than time out. */
  peerUnreachable(peer: string): void {
    for (const [id, ask] of this.#outbound) {
      if (ask.peer !== peer) continue;
      this.#outbound.delete(id);
      this.#answer(ask.origin, ask.askId, false, toWireError(new PeerUnreachable(peer)));
    }
  }

  #hold(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    if (this.#buffered >= this.#capacity) throw new Overloaded(`the buffer of partitions in transit (${this.#capacity} messages)`);
    let buffer = this.#buffers.get(partition);
    if (buffer === undefined) this.#buffers.set(partition, (buffer = []));
    buffer.push(id, partition, handler, payload, origin, askId);
    this.#buffered++;
  }

  /** Partitions that settled (now serving, or now elsewhere): send what waited for them. */
  drain(partitions: readonly number[]): void {
    for (const p of partitions) {
      const buffer = this.#buffers.get(p);
      if (buffer === undefined) continue;
      this.#buffers.delete(p);
      this.#buffered -= buffer.length / MSG_STRIDE;
      for (let i = 0; i < buffer.length; i += MSG_STRIDE) {
        this.#routeOrFail(buffer[i] as string, p, buffer[i + 2] as string, buffer[i + 3], buffer[i + 4] as number, buffer[i + 5] as number);
      }
    }
  }

  #routeOrFail(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    try {
      this.route(id, partition, handler, payload, origin, askId);
    } catch (err) {
      this.#answer(origin, askId, false, toWireError(err));
    }
  }

  /** Sends a reply to whoever asked, in local form: main thread, a shard, or a proxied remote ask. */
  #answer(origin: number, askId: number, ok: boolean, value: unknown): void {
    if (origin === NO_REPLY) return;
    if (askId < 0) this.replyToRemote(askId, ok, value);
    else if (origin === MAIN_ORIGIN) this.#o.local.settleMain(askId, ok, value);
    else this.#o.local.replyToShard(origin - 2, askId, ok, value);
  }

  replyToRemote(proxyAskId: number, ok: boolean, value: unknown): void {
    const proxied = this.#proxies.get(proxyAskId);
    if (proxied === undefined) return;
    this.#proxies.delete(proxyAskId);
    this.#transport?.reply(proxied.peer, proxied.remoteAskId, ok, value);
  }

  // ---- from other nodes ----------------------------------------------------------------------

  onBatch(from: string, m: unknown[], r: unknown[]): void {
    for (let i = 0; i < r.length; i += REPLY_STRIDE) {
      const out = this.#outbound.get(r[i] as number);
      if (out === undefined) continue;
      // Ask ids are sequential: any peer can name one. Only the node the ask went to answers it
      // (a redirected ask was forwarded again, under a new id, to the owner named then).
      if (out.peer !== from) {
        this.#refuseForged(from, out.peer, r[i] as number, 'reply');
        continue;
      }
      this.#outbound.delete(r[i] as number);
      this.#answer(out.origin, out.askId, r[i + 1] === 1, r[i + 2]);
    }
    let bounce: unknown[] | undefined;
    for (let i = 0; i < m.length; i += MSG_STRIDE) {
      const partition = m[i + 1] as number;
      if ((m[i] as string).startsWith(NODE_PREFIX)) {
        this.#answerNodeRequest(from, m[i + 2] as string, m[i + 3], m[i + 5] as number);
        continue;
      }
      if (this.#o.ownership.state(partition) === 'elsewhere') {
        // Not ours at our epoch: tell the sender who owns it; it retries there.
        (bounce ??= []).push(m[i], partition, m[i + 2], m[i + 3], m[i + 4], m[i + 5]);
        continue;
      }
      let origin = NO_REPLY;
      let askId = 0;
      if ((m[i + 4] as number) !== NO_REPLY) {
        origin = MAIN_ORIGIN;
        askId = this.#nextProxy;
        this.#nextProxy = askId <= -0x3fffffff ? -1 : askId - 1;
        this.#proxies.set(askId, { peer: from, remoteAskId: m[i + 5] as number });
      }
      this.#routeOrFail(m[i] as string, partition, m[i + 2] as string, m[i + 3], origin, askId);
    }
    if (bounce !== undefined) this.#bounce(from, bounce);
  }

  #answerNodeRequest(from: string, handler: string, payload: unknown, remoteAskId: number): void {
    const answer = this.#o.nodeRequest?.(handler, payload) ?? Promise.reject(new Error(`node requests are not served here`));
    answer.then(
      (value) => this.#transport?.reply(from, remoteAskId, true, value),
      (err) => this.#transport?.reply(from, remoteAskId, false, toWireError(err)),
    );
  }

  #bounce(to: string, m: unknown[]): void {
    const view = this.#o.ring.view();
    // One owner per redirect frame; the sender re-routes each message by its own view anyway.
    const owner = this.#o.ownership.ownerOf(m[1] as number);
    try {
      this.#transport?.redirect(to, view.epoch, owner, m);
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message, to, messages: m.length / MSG_STRIDE }, 'could not redirect messages; their asks will time out');
    }
  }

  /** Messages a peer sent back because it does not own their partitions at `epoch`. */
  async onRedirect(from: string, epoch: number, _owner: string, m: unknown[]): Promise<void> {
    if (this.#o.ring.view().epoch < epoch) await this.#o.ring.refresh();
    for (let i = 0; i < m.length; i += MSG_STRIDE) {
      // Back to local form: the forwarded ask id maps to who asked here.
      let origin = NO_REPLY;
      let askId = 0;
      if ((m[i + 4] as number) !== NO_REPLY) {
        const out = this.#outbound.get(m[i + 5] as number);
        if (out === undefined) continue;
        // Only the node an ask went to may send it back; another would take it over.
        if (out.peer !== from) {
          this.#refuseForged(from, out.peer, m[i + 5] as number, 'redirect');
          continue;
        }
        this.#outbound.delete(m[i + 5] as number);
        origin = out.origin;
        askId = out.askId;
      }
      const partition = m[i + 1] as number;
      if (this.#o.ownership.ownerOf(partition) === from && this.#o.ownership.state(partition) === 'elsewhere') {
        // Our view still names the node that refused: wait for the ring to move on.
        try {
          this.#hold(m[i] as string, partition, m[i + 2] as string, m[i + 3], origin, askId);
        } catch (err) {
          this.#answer(origin, askId, false, toWireError(err));
        }
      } else {
        this.#routeOrFail(m[i] as string, partition, m[i + 2] as string, m[i + 3], origin, askId);
      }
    }
  }

  /** Asks that could not be encoded for a peer (or that it sent back spoiled) fail at once instead of timing out. */
  onUnsendable(peer: string, m: unknown[], _r: unknown[], err: Error): void {
    for (let i = 0; i < m.length; i += MSG_STRIDE) {
      const out = this.#outbound.get(m[i + 5] as number);
      if ((m[i + 4] as number) === NO_REPLY || out === undefined) continue;
      if (out.peer !== peer) {
        this.#refuseForged(peer, out.peer, m[i + 5] as number, 'redirect');
        continue;
      }
      this.#outbound.delete(m[i + 5] as number);
      this.#answer(out.origin, out.askId, false, toWireError(err));
    }
  }

  /** Replies and redirected asks refused so far because they came from a node the ask did not go to. */
  get refusedForged(): number {
    return this.#forged;
  }

  #refuseForged(from: string, sentTo: string, askId: number, kind: 'reply' | 'redirect'): void {
    this.#forged++;
    const now = Date.now();
    if (now - this.#forgedLoggedAt < FORGED_LOG_EVERY_MS) {
      this.#forgedUnlogged++;
      return;
    }
    this.#o.log.warn(
      { from: from.slice(0, 200), sentTo, askId, kind, refusedUnlogged: this.#forgedUnlogged, total: this.#forged },
      `refused a ${kind} from node ${from.slice(0, 200)} to an ask sent to node ${sentTo} (a bug or a hostile peer); the ask still waits for ${sentTo}`,
    );
    this.#forgedLoggedAt = now;
    this.#forgedUnlogged = 0;
  }

  close(): void {
    clearInterval(this.#sweeper);
  }
}
