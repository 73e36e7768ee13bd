// The command language of `troupe inspect`: one line in (`stats`, `state cart/42`, `ask counter/a
// add 1`), one result out, as text for people and as data for --json. The session finds the
// cluster's members (from a seed node or from Redis), asks each node's Inspector, and puts the
// answers together. A bad line or an unreachable node fails that command only; the session goes on.

import { Ring } from '../cluster/ring.js';
import { parseActorId, partitionOf } from '../partition.js';
import { InspectorClient, InspectorCallError, type InspectorTls } from './client.js';
import {
  MAX_ACTORS_LIMIT,
  PARTITION_STATES,
  type ActorState,
  type Member,
  type NodeDescription,
  type PartitionStateName,
  type PartitionView,
} from './protocol.js';
import type { RedisMembers } from './redis-members.js';
import { bytes, count, duration, plural, pretty, ranges, table } from './text.js';

export interface CommandResult {
  /** The command word as typed (empty for a blank line). */
  command: string;
  ok: boolean;
  /** What a person reads (on success). */
  text: string;
  /** The same answer as plain data (for --json). */
  data?: unknown;
  /** Why it failed, and what to do. */
  error?: string;
  /** What the answer lacks: nodes that did not answer, and the like. */
  warnings: string[];
}

export interface SessionOptions {
  /** host:port of a node's cluster port: the members are what this node sees. */
  seed?: string;
  /** Or: the members are read from the cluster's keys in Redis. */
  redis?: RedisMembers;
  /** Deadline of each call to a node. */
  timeoutMs: number;
  /** How long an ask waits for the actor's reply. */
  askTimeoutMs: number;
  /** Dial the nodes with mutual TLS (InspectorClient's `tls`); without it, plaintext. */
  tls?: InspectorTls;
}

/** A mistake in the command line: said to the person, the session goes on. */
class UsageError extends Error {}

interface Answer<T> {
  member: Member;
  value: T;
}

interface Gathered<T> {
  answers: Answer<T>[];
  warnings: string[];
}

interface Command {
  usage: string;
  summary: string;
  run(args: string, session: InspectSession): Promise<Omit<CommandResult, 'command' | 'ok'>>;
}

const DEFAULT_ACTORS = 20;

/** Splits text given with --eval into commands at `;` and line ends outside double-quoted strings. */
export function splitCommands(text: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      current += c;
      if (c === '\\' && i + 1 < text.length) current += text[++i];
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
      current += c;
    } else if (c === ';' || c === '\n') {
      out.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  out.push(current);
  return out.map((s) => s.trim()).filter((s) => s !== '' && !s.startsWith('#'));
}

/** The first whitespace-separated word of `text` and what follows it. */
function word(text: string): [string, string] {
  const m = /^\s*(\S*)\s*([\s\S]*)$/.exec(text)!;
  return [m[1]!, m[2]!.trim()];
}

function checkActorId(id: string, usage: string): string {
  if (id === '') throw new UsageError(`an actor id is missing; usage: ${usage}`);
  try {
    parseActorId(id);
  } catch (err) {
    throw new UsageError(`${(err as Error).message}; usage: ${usage}`);
  }
  return id;
}

function parseMessage(text: string): string {
  if (text === '') return '';
  try {
    JSON.parse(text);
  } catch (err) {
    throw new UsageError(`the message is not valid JSON (${(err as Error).message}); write it as JSON: numbers as 1, strings in double quotes as "ann", objects as {"by": 2}`);
  }
  return text;
}

function statesOf(view: PartitionView): Record<PartitionStateName, number[]> {
  const out: Record<PartitionStateName, number[]> = { elsewhere: [], serving: [], acquiring: [], releasing: [], unavailable: [] };
  for (let p = 0; p < view.states.length; p++) out[PARTITION_STATES[view.states[p]!] ?? 'elsewhere'].push(p);
  return out;
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function ringOwners(view: PartitionView): string[] {
  return new Ring(view.ringMembers, view.vnodes).assign(view.partitions);
}

const COMMANDS: Record<string, Command> = {
  help: {
    usage: 'help',
    summary: 'this list',
    async run() {
      const rows = Object.values(COMMANDS).map((c) => [c.usage, c.summary]);
      return {
        text: `commands:\n${table(['command', 'what it does'], rows)}\n\nan actor is type/key (counter/a, cart/3f2a…); a message is JSON (1, "ann", {"by": 2}).`,
        data: Object.fromEntries(Object.entries(COMMANDS).map(([k, c]) => [k, c.summary])),
        warnings: [],
      };
    },
  },
  nodes: {
    usage: 'nodes',
    summary: 'the members: address, uptime, shards, actor types, ports',
    async run(_args, s) {
      const { answers, failures, members } = await s.eachMember((c) => c.describe(), true);
      const current = await s.currentNode(members);
      const byId = new Map(answers.map((a) => [a.member.nodeId, a.value]));
      const failed = new Map(failures.map((f) => [f.member.nodeId, f.error]));
      const rows = members.map((m) => {
        const d = byId.get(m.nodeId);
        const mark = m.nodeId === current.nodeId ? '*' : '';
        if (!d) return [mark, m.nodeId, m.address, `unreachable: ${failed.get(m.nodeId) ?? '?'}`];
        const ports = d.ports.map((p) => `${p.name} ${p.port}`).join(', ') || 'none';
        const serves = d.cluster ? `, serves ${d.serving} of the ${d.owned} partitions the ring gives it${d.notReady ? `, NOT READY: ${d.notReady}` : ''}` : '';
        return [mark, m.nodeId, m.address, `up ${duration(d.uptimeMs)}, ${plural(d.shards, 'shard')}, types ${d.actorTypes.map((t) => t.name).join(' ') || 'none'}, ports ${ports}${d.inspectorMode === 'read-only' ? ', read-only' : ''}${serves}`];
      });
      const first = answers[0]?.value;
      const where = first?.cluster ? `in cluster "${first.cluster}"` : 'on its own (no cluster)';
      return {
        text: `${plural(members.length, 'node')} ${where}; * marks the node ask and tell go through (change it with use)\n${table(['', 'node', 'address', 'state'], rows)}`,
        data: members.map((m) => ({ ...m, current: m.nodeId === current.nodeId, node: strip(byId.get(m.nodeId)), error: failed.get(m.nodeId) })),
        warnings: [],
      };
    },
  },
  use: {
    usage: 'use <node>',
    summary: 'send ask and tell through this node (an id, its first letters, an address, or its number in nodes)',
    async run(args, s) {
      if (args === '') throw new UsageError('which node? usage: use <node id, first letters of it, host:port, or its number in the nodes list>');
      const m = await s.use(args);
      return { text: `ask and tell now go through ${m.nodeId} (${m.address})`, data: m, warnings: [] };
    },
  },
  stats: {
    usage: 'stats [node]',
    summary: 'per node and shard: actors, turns, failures, commits, queues, memory, links',
    async run(args, s) {
      const { answers, warnings } = await s.gather((c) => c.stats(), args || undefined);
      const blocks = answers.map(({ member, value: st }) => {
        const lines = [
          `node ${member.nodeId} (${member.address}): up ${duration(st.uptimeMs)}, rss ${bytes(st.rssBytes)}, main heap ${bytes(st.heapUsedBytes)}, ${plural(st.pendingAsks, 'ask')} pending`,
          table(
            ['shard', 'actors', 'turns', 'failed', 'commits', 'stored', 'activated', 'passivated', 'overloaded', 'queued', 'heap'],
            st.shards.map((sh) => [sh.shard, sh.activations, sh.turns, sh.turnsFailed, sh.commits, sh.committedStates, sh.activationsTotal, sh.passivationsTotal, sh.rejectedOverloaded, sh.queued, bytes(sh.heapUsedBytes)]),
          ),
        ];
        if (st.links.length > 0) {
          lines.push(
            '  links: ' +
              st.links
                .map((l) => `${l.nodeId} ${l.connected ? 'up' : 'down'} (${count(l.framesSent)} frames sent, ${count(l.queuedFrames)} queued${l.stalls ? `, ${count(l.stalls)} stalls` : ''})`)
                .join('; '),
          );
        }
        return lines.join('\n');
      });
      return { text: blocks.join('\n\n'), data: answers.map((a) => a.value), warnings };
    },
  },
  ring: {
    usage: 'ring',
    summary: 'the ring epoch and members; per node the partitions it owns, serves, acquires, releases',
    async run(_args, s) {
      const { answers, warnings } = await s.gather((c) => c.partitions());
      const views = answers.map((a) => a.value);
      const newest = views.reduce((a, b) => (b.ringEpoch > a.ringEpoch ? b : a));
      const owners = ringOwners(newest);
      const P = newest.partitions;
      const servedBy = new Array<number>(P).fill(0);
      for (const v of views) for (let p = 0; p < P; p++) if (v.states[p] === 1) servedBy[p]!++;
      const rows = answers.map(({ member, value: v }) => {
        const st = statesOf(v);
        const owns = owners.reduce((n, o) => n + (o === member.nodeId ? 1 : 0), 0);
        return [member.nodeId, v.ringEpoch, owns, st.serving.length, st.acquiring.length, st.releasing.length, st.unavailable.length, v.leaseTtlMs ? v.leasesHeld : 0];
      });
      const lines = [
        `ring epoch ${newest.ringEpoch}: ${plural(newest.ringMembers.length, 'member')}, ${count(P)} partitions, ${newest.vnodes} virtual nodes per member`,
        table(['node', 'epoch', 'owns', 'serving', 'acquiring', 'releasing', 'unavailable', 'leases'], rows),
      ];
      // Partitions of ring members that did not answer are unknown here, not unserved.
      const silent = new Set(newest.ringMembers.filter((m) => !answers.some((a) => a.member.nodeId === m)));
      const none = servedBy.flatMap((n, p) => (n === 0 && !silent.has(owners[p]!) ? [p] : []));
      const unknown = servedBy.flatMap((n, p) => (n === 0 && silent.has(owners[p]!) ? [p] : []));
      const many = servedBy.flatMap((n, p) => (n > 1 ? [p] : []));
      const epochs = new Set(views.map((v) => v.ringEpoch));
      if (epochs.size > 1) warnings.push(`the nodes see different ring epochs (${[...epochs].sort((a, b) => a - b).join(', ')}): a change is spreading; look again in a moment`);
      if (silent.size > 0) {
        warnings.push(`on the ring but not answering: ${[...silent].join(', ')}; if it died, the cluster declares it dead within about 2 s and the others take its partitions`);
      }
      if (none.length === 0 && many.length === 0 && unknown.length === 0) lines.push(`every partition is served by exactly one node`);
      if (unknown.length > 0) lines.push(`unknown: ${plural(unknown.length, 'partition')} the ring gives to nodes that did not answer`);
      const whys = [...new Set(answers.filter((a) => a.value.unavailableWhy).map((a) => `${a.member.nodeId}: ${a.value.unavailableWhy}`))];
      if (none.length > 0) lines.push(`served by no node: ${plural(none.length, 'partition')} (${ranges(none, 16)}): ${whys.length > 0 ? whys.join('; ') : 'being handed off or waiting for a lease to lapse'}`);
      if (many.length > 0) lines.push(`served by more than one node, as the nodes answered one after another: ${ranges(many, 16)} (look again; if it stays, it is a fault)`);
      return {
        text: lines.join('\n'),
        data: {
          epoch: newest.ringEpoch,
          members: newest.ringMembers,
          partitions: P,
          vnodes: newest.vnodes,
          nodes: rows.map(([nodeId, epoch, owns, serving, acquiring, releasing, unavailable, leases]) => ({ nodeId, epoch, owns, serving, acquiring, releasing, unavailable, leases })),
          servedByNone: none,
          servedByMany: many,
          unknown,
        },
        warnings,
      };
    },
  },
  partitions: {
    usage: 'partitions [node]',
    summary: 'which partitions each node owns by the ring, serves, acquires (and whose lease it waits for), releases',
    async run(args, s) {
      const { answers, warnings } = await s.gather((c) => c.partitions(), args || undefined);
      const data = answers.map(({ member, value: v }) => {
        const owners = ringOwners(v);
        const st = statesOf(v);
        const owns = owners.flatMap((o, p) => (o === member.nodeId ? [p] : []));
        return { nodeId: member.nodeId, epoch: v.ringEpoch, owns, serving: st.serving, acquiring: st.acquiring, releasing: st.releasing, unavailable: st.unavailable, unavailableWhy: v.unavailableWhy, leaseTtlMs: v.leaseTtlMs, leasesHeld: v.leasesHeld, waitingOn: v.waitingOn };
      });
      const text = data
        .map((d) => {
          const lines = [
            `${d.nodeId} (ring epoch ${d.epoch}${d.leaseTtlMs ? `, ${plural(d.leasesHeld, 'lease')} held, TTL ${d.leaseTtlMs} ms` : ', alone: no leases'})`,
            `  owns       ${String(d.owns.length).padStart(5)}: ${ranges(d.owns)}`,
            `  serving    ${String(d.serving.length).padStart(5)}: ${sameList(d.serving, d.owns) ? 'all it owns' : ranges(d.serving)}`,
            `  acquiring  ${String(d.acquiring.length).padStart(5)}: ${ranges(d.acquiring)}`,
            `  releasing  ${String(d.releasing.length).padStart(5)}: ${ranges(d.releasing)}`,
          ];
          if (d.unavailable.length > 0) lines.push(`  served by nobody ${String(d.unavailable.length).padStart(5)}: ${ranges(d.unavailable)} (${d.unavailableWhy || 'leases past their deadline'})`);
          if (d.waitingOn.length > 0) {
            lines.push(`  waiting for leases: ${d.waitingOn.map((w) => `${w.partition} (${w.nodeId ? `held by ${w.nodeId} at epoch ${w.epoch}` : 'free now'})`).join(', ')}`);
          }
          return lines.join('\n');
        })
        .join('\n\n');
      return { text, data, warnings };
    },
  },
  where: {
    usage: 'where <type/key | partition>',
    summary: "an actor's partition and shard, the ring's owner of it, and which node serves it",
    async run(args, s) {
      const [target] = word(args);
      if (target === '') throw new UsageError('where what? usage: where <type/key> or where <partition number>');
      const { answers, warnings } = await s.gather((c) => c.partitions());
      const views = answers.map((a) => a.value);
      const newest = views.reduce((a, b) => (b.ringEpoch > a.ringEpoch ? b : a));
      const P = newest.partitions;
      let partition: number;
      let id: string | undefined;
      if (/^\d+$/.test(target)) {
        partition = Number(target);
        if (partition >= P) throw new UsageError(`partition ${partition} does not exist: this cluster has ${P} (0 to ${P - 1})`);
      } else {
        id = checkActorId(target, this.usage);
        partition = partitionOf(id, P);
      }
      const owner = new Ring(newest.ringMembers, newest.vnodes).ownerOfPartition(partition) ?? '';
      const shards = (await s.describeOf(owner))?.shards;
      const servedBy = answers.filter((a) => a.value.states[partition] === 1).map((a) => a.member.nodeId);
      const state = answers.map((a) => `${a.member.nodeId} ${PARTITION_STATES[a.value.states[partition]!] ?? '?'}`);
      const lines = [
        `${id ? `${id}: ` : ''}partition ${partition} of ${P}${shards ? `, shard ${partition % shards} of ${shards} on its owner` : ''}`,
        `ring owner (epoch ${newest.ringEpoch}): ${owner || 'none (empty ring)'}`,
        `served by: ${servedBy.join(', ') || 'no node now'}  (${state.join('; ')})`,
      ];
      return { text: lines.join('\n'), data: { id, partition, partitions: P, shard: shards ? partition % shards : undefined, owner, epoch: newest.ringEpoch, servedBy }, warnings };
    },
  },
  actors: {
    usage: 'actors [type] [limit]',
    summary: `live actors on every node (default ${DEFAULT_ACTORS}, at most ${MAX_ACTORS_LIMIT})`,
    async run(args, s) {
      const words = args.split(/\s+/).filter(Boolean);
      let type: string | undefined;
      let limit: number | undefined;
      for (const w of words) {
        if (/^\d+$/.test(w) && limit === undefined) limit = Number(w);
        else if (!/^\d+$/.test(w) && type === undefined && limit === undefined) type = w;
        else throw new UsageError(`unexpected "${w}"; usage: ${this.usage}`);
      }
      limit ??= DEFAULT_ACTORS;
      if (limit < 1 || limit > MAX_ACTORS_LIMIT) throw new UsageError(`the limit must be 1 to ${MAX_ACTORS_LIMIT}, got ${limit}`);
      // One more than shown tells whether there are more (up to the node's cap, where it may only say so).
      const { answers, warnings } = await s.gather((c) => c.actors(type, Math.min(limit + 1, MAX_ACTORS_LIMIT)));
      const rows: [string, string][] = [];
      let more = false;
      for (const { member, value } of answers) {
        if (value.ids.length > limit || value.ids.length >= MAX_ACTORS_LIMIT) more = true;
        for (const id of value.ids) rows.push([id, member.nodeId]);
      }
      const shown = rows.slice(0, limit);
      more ||= rows.length > limit;
      const raise = limit < MAX_ACTORS_LIMIT ? `: raise the limit, e.g. actors ${type ? type + ' ' : ''}${Math.min(limit * 5, MAX_ACTORS_LIMIT)}` : '';
      const lines = [`${plural(shown.length, 'live actor')}${type ? ` of type ${type}` : ''}${more ? ` (the first ${limit}; there are more${raise})` : ''}`];
      if (shown.length > 0) lines.push(table(['actor', 'node'], shown));
      return { text: lines.join('\n'), data: { actors: shown.map(([id, nodeId]) => ({ id, nodeId })), more }, warnings };
    },
  },
  state: {
    usage: 'state <type/key>',
    summary: "an actor's state as JSON, from the node serving it (live, or its last committed snapshot)",
    async run(args, s) {
      const id = checkActorId(word(args)[0], this.usage);
      const { answers, warnings } = await s.gather((c) => c.state(id));
      const found = answers.filter((a) => a.value.found !== 'none');
      const best = found.find((a) => a.value.servedHere) ?? found[0] ?? answers.find((a) => a.value.servedHere) ?? answers[0]!;
      const st: ActorState = best.value;
      if (st.found === 'none') {
        const anyNode = warnings.length > 0 ? 'any node that answered' : 'any node';
        const text =
          st.storage === 'durable'
            ? `${id} is not live on ${anyNode} and has no stored state there: it starts from its initial state on its first message`
            : `${id} is not live on ${anyNode} (volatile: it starts from its initial state on its first message)`;
        return { text, data: { ...st, json: undefined, state: undefined }, warnings };
      }
      if (!st.servedHere) warnings.push(`${best.member.nodeId} does not serve partition ${st.partition} now: this state may be stale (the partition is moving)`);
      const how =
        st.found === 'active'
          ? `live on ${best.member.nodeId} (${st.storage}; ${plural(st.waiting, 'message')} waiting, ${st.busy ? 'in a turn' : 'idle'}, ${plural(st.timers, 'timer')})`
          : `stored on ${best.member.nodeId} (durable, passivated: its last committed state)`;
      const lines = [`${id}: partition ${st.partition}, shard ${st.shard}, ${how}`, pretty(st.json)];
      if (st.truncated) lines.push('(cut to fit: "$more" and "$truncated" mark what was left out)');
      return { text: lines.join('\n'), data: { ...st, nodeId: best.member.nodeId, json: undefined, state: JSON.parse(st.json) as unknown }, warnings };
    },
  },
  ask: {
    usage: 'ask <type/key> <handler> [json]',
    summary: 'sends a message and prints the reply (routed to wherever the actor lives)',
    async run(args, s) {
      return s.send(args, true, this.usage);
    },
  },
  tell: {
    usage: 'tell <type/key> <handler> [json]',
    summary: 'sends a message without waiting for any reply',
    async run(args, s) {
      return s.send(args, false, this.usage);
    },
  },
  exit: {
    usage: 'exit',
    summary: 'leaves (also quit, or Ctrl-D)',
    async run(_args, s) {
      s.finished = true;
      return { text: '', warnings: [] };
    },
  },
};
const ALIASES: Record<string, string> = { quit: 'exit', '.exit': 'exit', '?': 'help', members: 'nodes' };

/** A description without the members list (it is the same as `nodes` already shows). */
function strip(d: NodeDescription | undefined): Omit<NodeDescription, 'members'> | undefined {
  if (!d) return undefined;
  const { members: _members, ...rest } = d;
  return rest;
}

export class InspectSession {
  /** Set by `exit`. */
  finished = false;
  readonly #o: SessionOptions;
  readonly #clients = new Map<string, InspectorClient>();
  #seed: string | undefined;
  /** The seed node's id (answers at the address the person gave, whatever it advertises). */
  #seedId: string | undefined;
  #known: Member[] = [];
  readonly #descriptions = new Map<string, NodeDescription>();
  #chosen: string | undefined;

  constructor(o: SessionOptions) {
    if (!o.seed === !o.redis) throw new TypeError('an inspect session needs a seed node or a Redis, and only one');
    this.#o = o;
    this.#seed = o.seed;
  }

  static commandNames(): string[] {
    return [...Object.keys(COMMANDS), ...Object.keys(ALIASES)];
  }

  /** Actor types the nodes answered with so far (for completion). */
  actorTypes(): string[] {
    return [...new Set([...this.#descriptions.values()].flatMap((d) => d.actorTypes.map((t) => t.name)))];
  }

  /** Runs one line; undefined for a blank line or a # comment. */
  async run(line: string): Promise<CommandResult | undefined> {
    const [typed, args] = word(line);
    if (typed === '' || typed.startsWith('#')) return undefined;
    const name = ALIASES[typed] ?? typed;
    const command = COMMANDS[name];
    if (!command) {
      return { command: typed, ok: false, text: '', error: `unknown command "${typed}"; the commands are ${Object.keys(COMMANDS).join(', ')} (help says what each does)`, warnings: [] };
    }
    try {
      const r = await command.run(args, this);
      return { command: name, ok: true, ...r };
    } catch (err) {
      return { command: name, ok: false, text: '', error: err instanceof Error ? err.message : String(err), warnings: [] };
    }
  }

  #client(address: string): InspectorClient {
    let c = this.#clients.get(address);
    if (!c) {
      c = new InspectorClient(address, { timeoutMs: this.#o.timeoutMs, tls: this.#o.tls });
      this.#clients.set(address, c);
    }
    return c;
  }

  /** Where to reach a member: the seed at the address given, the others at what they advertise. */
  #addressOf(m: Member): string {
    return m.nodeId === this.#seedId && this.#seed ? this.#seed : m.address;
  }

  /** The live members now: from Redis, or as the seed node (or, if it is down, another known member) sees them. */
  async members(): Promise<Member[]> {
    if (this.#o.redis) {
      const members = await this.#o.redis.list();
      if (members.length === 0) {
        throw new Error(`cluster "${this.#o.redis.cluster}" has no live member in Redis; is a node running with --redis and --cluster ${this.#o.redis.cluster}?`);
      }
      this.#known = members;
      return members;
    }
    const candidates = [this.#seed!, ...this.#known.filter((m) => m.nodeId !== this.#seedId).map((m) => m.address)];
    let first: unknown;
    for (const address of [...new Set(candidates)]) {
      try {
        const d = await this.#client(address).describe();
        this.#descriptions.set(d.nodeId, d);
        this.#seed = address;
        this.#seedId = d.nodeId;
        this.#known = d.members.map((m) => (m.nodeId === d.nodeId ? { ...m, address: m.address || address } : m));
        return this.#known.map((m) => ({ ...m, address: this.#addressOf(m) }));
      } catch (err) {
        first ??= err;
        if (!(err instanceof InspectorCallError && err.unreachable)) throw err;
      }
    }
    throw first;
  }

  /** The node ask and tell go through: the one chosen with `use`, else the seed, else the first member. */
  async currentNode(members?: Member[]): Promise<Member> {
    const all = members ?? (await this.members());
    if (this.#chosen !== undefined) {
      const m = all.find((x) => x.nodeId === this.#chosen);
      if (m) return m;
      throw new Error(`node ${this.#chosen}, chosen with use, is no longer a member; choose another with use (see nodes)`);
    }
    return all.find((m) => m.nodeId === this.#seedId) ?? all[0]!;
  }

  #match(all: Member[], which: string): Member {
    if (/^\d+$/.test(which)) {
      const m = all[Number(which) - 1];
      if (m) return m;
      throw new UsageError(`there is no node number ${which}: there are ${all.length} (see nodes)`);
    }
    const exact = all.find((m) => m.nodeId === which || m.address === which);
    if (exact) return exact;
    const prefixed = all.filter((m) => m.nodeId.startsWith(which));
    if (prefixed.length === 1) return prefixed[0]!;
    if (prefixed.length > 1) throw new UsageError(`"${which}" starts more than one node id (${prefixed.map((m) => m.nodeId).join(', ')}); give more of it`);
    throw new UsageError(`no member is "${which}"; the members are ${all.map((m) => m.nodeId).join(', ')}`);
  }

  async use(which: string): Promise<Member> {
    const all = await this.members();
    const m = this.#match(all, which);
    await this.#client(m.address).describe(); // reachable now, or say so
    this.#chosen = m.nodeId;
    return m;
  }

  /** The description a node gave, asking it if not known yet (undefined if it does not answer). */
  async describeOf(nodeId: string): Promise<NodeDescription | undefined> {
    const known = this.#descriptions.get(nodeId);
    if (known) return known;
    const m = this.#known.find((x) => x.nodeId === nodeId);
    if (!m) return undefined;
    try {
      const d = await this.#client(this.#addressOf(m)).describe();
      this.#descriptions.set(d.nodeId, d);
      return d;
    } catch {
      return undefined;
    }
  }

  /** Asks every member (or one) at once; collects answers and failures, in member order. */
  async eachMember<T>(call: (c: InspectorClient) => Promise<T>, all: boolean, which?: string) {
    const members = await this.members();
    const chosen = which === undefined ? members : [this.#match(members, which)];
    const settled = await Promise.allSettled(chosen.map((m) => call(this.#client(m.address))));
    const answers: Answer<T>[] = [];
    const failures: { member: Member; error: string }[] = [];
    settled.forEach((r, i) => {
      if (r.status === 'fulfilled') answers.push({ member: chosen[i]!, value: r.value });
      else failures.push({ member: chosen[i]!, error: r.reason instanceof Error ? r.reason.message : String(r.reason) });
    });
    for (const a of answers) if (typeof a.value === 'object' && a.value !== null && 'actorTypes' in a.value) this.#descriptions.set(a.member.nodeId, a.value as unknown as NodeDescription);
    if (!all && answers.length === 0) throw new Error(failures.length === 1 ? failures[0]!.error : `no node answered: ${failures.map((f) => f.error).join('; ')}`);
    return { answers, failures, members: chosen };
  }

  /** Like eachMember, but fails when no node answers and reports the others as warnings. */
  async gather<T>(call: (c: InspectorClient) => Promise<T>, which?: string): Promise<Gathered<T>> {
    const { answers, failures } = await this.eachMember(call, false, which);
    return { answers, warnings: failures.map((f) => `${f.member.nodeId} did not answer: ${f.error}`) };
  }

  /** `ask` and `tell`: through the current node, which routes the message to the actor's owner. */
  async send(args: string, ask: boolean, usage: string): Promise<Omit<CommandResult, 'command' | 'ok'>> {
    const [id, afterId] = word(args);
    checkActorId(id, usage);
    const [handler, json] = word(afterId);
    if (handler === '') throw new UsageError(`a handler is missing; usage: ${usage}`);
    const messageJson = parseMessage(json);
    const via = await this.currentNode();
    const reply = await this.#client(via.address).send({ id, handler, messageJson, ask, askTimeoutMs: this.#o.askTimeoutMs });
    if (!ask) {
      return { text: `told ${id} ${handler} through ${via.nodeId} (a tell has no reply; the actor handles it after this returns)`, data: { id, handler, via: via.nodeId }, warnings: [] };
    }
    if (!reply.ok) {
      const f = reply.failure ?? { name: 'Error', code: '', message: 'failed' };
      throw new Error(`ask ${id} ${handler} failed: ${f.name}${f.code ? ` [${f.code}]` : ''}: ${f.message}`);
    }
    const value = JSON.parse(reply.replyJson) as unknown;
    const nothing = typeof value === 'object' && value !== null && (value as { $type?: unknown }).$type === 'undefined';
    const lines = [nothing ? '(no reply value: the handler returned nothing)' : pretty(reply.replyJson)];
    if (reply.truncated) lines.push('(cut to fit: "$more" and "$truncated" mark what was left out)');
    return { text: lines.join('\n'), data: { id, handler, via: via.nodeId, reply: nothing ? undefined : value, truncated: reply.truncated }, warnings: [] };
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}
