// The run's own network, so that links can be cut for real: one network namespace per node, each
// joined by a veth pair to a bridge in the host namespace that carries the run's private /24. The
// bridge's address (.1) is where the load, the verdict and the run's Redis and PostgreSQL are
// reached; node i is .(10+i). Partitions are nft rules inside the node's namespace; slow links are
// tc qdiscs on its veth. Names carry the chaos process id, so a run removes what it made and, at
// start, what runs that are no longer alive left behind.

import { spawnSync } from 'node:child_process';

/** Every name the run makes begins with this (namespaces tchaos-<pid36>-nN, links tcb<pid36>, tcv<pid36>N). */
const NETNS_PREFIX = 'tchaos-';

/**
 * Where ip, tc and nft are looked up, for the tools themselves and for what `ip netns exec` runs:
 * the system's directories only. Under npm scripts PATH starts with node_modules/.bin, where a
 * dependency's `nft` (a JavaScript file tracer) answered `nft -f -` with exit 0 and cut nothing.
 */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const SYSTEM_ENV = { ...process.env, PATH: SYSTEM_PATH };

function run(cmd: string, args: string[], input?: string): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 10_000, env: SYSTEM_ENV });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim() };
}

function must(cmd: string, args: string[], input?: string): string {
  const r = run(cmd, args, input);
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.out}`);
  return r.out;
}

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { env: SYSTEM_ENV }).status === 0;
}

/** Why the run cannot make namespaces here, or undefined when it can. */
export function networkProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'network faults need root (network namespaces, veth pairs, nft)';
  for (const tool of ['ip', 'tc', 'nft']) if (!has(tool)) return `network faults need the ${tool} command (apt-get install ${tool === 'nft' ? 'nftables' : 'iproute2'})`;
  return undefined;
}

/** True when the kernel has the netem qdisc (delay and loss); this machine's does not. */
function netemAvailable(dev: string, ns: string): boolean {
  const r = run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'netem', 'delay', '1ms']);
  if (r.ok) run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root']);
  return r.ok;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Removes namespaces and links of chaos runs whose process is gone (a crash or a SIGKILL of chaos). */
export function removeStaleNetworks(): string[] {
  const removed: string[] = [];
  const tags = new Set<string>();
  for (const line of run('ip', ['netns', 'list']).out.split('\n')) {
    const m = /^tchaos-([0-9a-z]+)-n\d+/.exec(line.trim());
    if (m) tags.add(m[1]!);
  }
  for (const line of run('ip', ['-o', 'link', 'show']).out.split('\n')) {
    const m = /^\d+: tcb([0-9a-z]+)[@:]/.exec(line);
    if (m) tags.add(m[1]!);
  }
  for (const tag of tags) {
    if (alive(parseInt(tag, 36))) continue;
    for (const line of run('ip', ['netns', 'list']).out.split('\n')) {
      const ns = line.trim().split(' ')[0]!;
      if (ns.startsWith(`${NETNS_PREFIX}${tag}-`) && run('ip', ['netns', 'del', ns]).ok) removed.push(ns);
    }
    if (run('ip', ['link', 'del', `tcb${tag}`]).ok) removed.push(`tcb${tag}`);
  }
  return removed;
}

export interface NodeLink {
  /** The namespace the node runs in (`ip netns exec NAME ...`). */
  netns: string;
  /** The node's address, and the bridge's (the gateway of every namespace). */
  address: string;
  /** Its veth end inside the namespace and the one on the bridge. */
  inner: string;
  outer: string;
}

export class RunNetwork {
  readonly tag = process.pid.toString(36);
  readonly bridge = `tcb${this.tag}`;
  readonly links: NodeLink[] = [];
  readonly subnet: string;
  /** The bridge's address: the load, the verdict, Redis and PostgreSQL. */
  readonly hostAddress: string;
  readonly netem: boolean;
  #made = false;

  private constructor(nodes: number) {
    this.subnet = RunNetwork.#freeSubnet();
    this.hostAddress = `${this.subnet}.1`;
    this.#made = true;
    try {
      must('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
      must('ip', ['addr', 'add', `${this.hostAddress}/24`, 'dev', this.bridge]);
      must('ip', ['link', 'set', this.bridge, 'up']);
      for (let i = 0; i < nodes; i++) {
        const link: NodeLink = { netns: `${NETNS_PREFIX}${this.tag}-n${i + 1}`, address: `${this.subnet}.${10 + i + 1}`, inner: 'eth0', outer: `tcv${this.tag}${i + 1}` };
        must('ip', ['netns', 'add', link.netns]);
        must('ip', ['link', 'add', link.outer, 'type', 'veth', 'peer', 'name', `tcp${this.tag}${i + 1}`]);
        must('ip', ['link', 'set', `tcp${this.tag}${i + 1}`, 'netns', link.netns]);
        const inNs = (...args: string[]) => must('ip', ['netns', 'exec', link.netns, ...args]);
        inNs('ip', 'link', 'set', `tcp${this.tag}${i + 1}`, 'name', link.inner);
        inNs('ip', 'addr', 'add', `${link.address}/24`, 'dev', link.inner);
        inNs('ip', 'link', 'set', link.inner, 'up');
        inNs('ip', 'link', 'set', 'lo', 'up');
        inNs('ip', 'route', 'add', 'default', 'via', this.hostAddress);
        must('ip', ['link', 'set', link.outer, 'master', this.bridge]);
        must('ip', ['link', 'set', link.outer, 'up']);
        this.links.push(link);
        // The table partitions and losses add their rules to; empty means every link open.
        this.#rules(link, []);
      }
    } catch (err) {
      this.remove();
      throw err;
    }
    this.netem = this.links[0] ? netemAvailable(this.links[0].inner, this.links[0].netns) : false;
  }

  /** Makes the bridge and one namespace per node (removing what dead runs left first). */
  static create(nodes: number): RunNetwork {
    removeStaleNetworks();
    return new RunNetwork(nodes);
  }

  /** A /24 of 10.213.0.0/16 that no interface of this machine uses yet. */
  static #freeSubnet(): string {
    const used = run('ip', ['-4', '-o', 'addr', 'show']).out;
    for (let k = 0; k < 256; k++) {
      const third = (process.pid + k) % 256;
      const subnet = `10.213.${third}`;
      if (!used.includes(` ${subnet}.`)) return subnet;
    }
    throw new Error('no free /24 in 10.213.0.0/16 for the run\'s network');
  }

  /**
   * Cuts node `i` off: from its peers (their addresses), from Redis (the run's Redis ports on the
   * bridge address), or both. Packets are dropped, not refused, as a real partition does: open
   * connections hang until their own timeouts. The load still reaches the node's gateways.
   */
  cut(i: number, side: 'peers' | 'redis' | 'both', redisPorts: number[]): void {
    const link = this.links[i]!;
    const peers = this.links.filter((_, j) => j !== i).map((l) => l.address);
    const rules: string[] = [];
    if (side !== 'redis' && peers.length) {
      rules.push(`add rule inet troupe_chaos output ip daddr { ${peers.join(', ')} } drop`, `add rule inet troupe_chaos input ip saddr { ${peers.join(', ')} } drop`);
    }
    if (side !== 'peers' && redisPorts.length) {
      const ports = redisPorts.join(', ');
      rules.push(`add rule inet troupe_chaos output ip daddr ${this.hostAddress} tcp dport { ${ports} } drop`, `add rule inet troupe_chaos input ip saddr ${this.hostAddress} tcp sport { ${ports} } drop`);
    }
    this.#rules(link, rules);
  }

  /**
   * Slows node `i`'s link: with netem, `delayMs` ± a quarter and `lossPercent` each way; without
   * it (this kernel), the loss by nft (numgen random) and a bandwidth cap by tbf, whose queue
   * is what delays (up to `delayMs` of it) under load.
   */
  slow(i: number, delayMs: number, lossPercent: number): string {
    const link = this.links[i]!;
    if (this.netem) {
      const spec = ['delay', `${delayMs}ms`, `${Math.round(delayMs / 4)}ms`, 'loss', `${lossPercent}%`];
      must('ip', ['netns', 'exec', link.netns, 'tc', 'qdisc', 'replace', 'dev', link.inner, 'root', 'netem', ...spec]);
      must('tc', ['qdisc', 'replace', 'dev', link.outer, 'root', 'netem', ...spec]);
      return `netem delay ${delayMs}ms ±${Math.round(delayMs / 4)}ms, loss ${lossPercent}% each way`;
    }
    const tbf = ['tbf', 'rate', '2mbit', 'burst', '16kb', 'latency', `${delayMs}ms`];
    must('ip', ['netns', 'exec', link.netns, 'tc', 'qdisc', 'replace', 'dev', link.inner, 'root', ...tbf]);
    must('tc', ['qdisc', 'replace', 'dev', link.outer, 'root', ...tbf]);
    this.#rules(link, [`add rule inet troupe_chaos output numgen random mod 100 < ${lossPercent} drop`, `add rule inet troupe_chaos input numgen random mod 100 < ${lossPercent} drop`]);
    return `loss ${lossPercent}% each way (nft), 2 Mbit/s with up to ${delayMs}ms of queue (tbf; this kernel has no netem)`;
  }

  /** Every link of node `i` open again at full speed. */
  heal(i: number): void {
    const link = this.links[i]!;
    this.#rules(link, []);
    run('ip', ['netns', 'exec', link.netns, 'tc', 'qdisc', 'del', 'dev', link.inner, 'root']);
    run('tc', ['qdisc', 'del', 'dev', link.outer, 'root']);
  }

  /** Replaces the node's rule table at once (nft -f is atomic). */
  #rules(link: NodeLink, rules: string[]): void {
    const script = [
      'table inet troupe_chaos', 'delete table inet troupe_chaos',
      'table inet troupe_chaos {', '  chain input { type filter hook input priority 0; policy accept; }', '  chain output { type filter hook output priority 0; policy accept; }', '}',
      ...rules, '',
    ].join('\n');
    must('ip', ['netns', 'exec', link.netns, 'nft', '-f', '-'], script);
    // Read back what the kernel holds: a fault that was not applied must not pass for one survived.
    const held = must('ip', ['netns', 'exec', link.netns, 'nft', 'list', 'table', 'inet', 'troupe_chaos']);
    const drops = held.split('\n').filter((l) => /\bdrop\b/.test(l)).length;
    if (drops !== rules.length) throw new Error(`nft in ${link.netns} holds ${drops} drop rules, ${rules.length} were asked for:\n${held}`);
  }

  /** Removes every namespace and link of the run; safe to call twice. */
  remove(): string[] {
    if (!this.#made) return [];
    const problems: string[] = [];
    for (let i = 1; i <= 9; i++) {
      const ns = `${NETNS_PREFIX}${this.tag}-n${i}`;
      if (run('ip', ['netns', 'list']).out.split('\n').some((l) => l.trim().split(' ')[0] === ns)) {
        const r = run('ip', ['netns', 'del', ns]);
        if (!r.ok) problems.push(`namespace ${ns} not removed: ${r.out}; remove it with: ip netns del ${ns}`);
      }
      run('ip', ['link', 'del', `tcv${this.tag}${i}`]);
    }
    run('ip', ['link', 'del', this.bridge]);
    this.#made = false;
    return problems;
  }

  /** For exit handlers: the same, without reporting. */
  removeNow(): void {
    try {
      this.remove();
    } catch {
      // best effort on the way out
    }
  }
}
