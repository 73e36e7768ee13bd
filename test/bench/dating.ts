// Benchmark of the dating game: the harness against (a) Troupe's dating gateway in connect mode
// and (b) a floor written here (one process, no actors: parse, order, scan, send), on the same
// generated rounds, median of several runs, and their ratio; plus the 10,000,000-event round.
// Run as a script with `floor` or `troupe` as first argument, it is one of the two contestants.

import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { generateRound, type GeneratedRound } from '../../gateways/dating/generator.js';
import { listenAsHarness, type HarnessResult } from '../../gateways/dating/harness.js';

import type { BenchResult } from './run.js';
export type { BenchResult };

const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------- the floor (a contestant)

/** The fastest plain way to play a round: no actors, no runtime, one thread. */
async function floor(host: string, sourcePort: number, listenerPort: number): Promise<number> {
  let from = new Int32Array(1 << 20);
  let to = new Int32Array(1 << 20);
  let state = new Uint8Array(1 << 20); // 0 not arrived, 1 arrived, 2 arrived and liked
  let frontier = 0;
  // Directed likes seen so far, open addressing on (from, to).
  let keysFrom = new Int32Array(1 << 16);
  let keysTo = new Int32Array(1 << 16);
  let used = 0;
  const hash = (f: number, t: number, mask: number) => ((Math.imul(f, 0x9e3779b1) ^ Math.imul(t, 0x85ebca6b)) >>> 0) & mask;
  const has = (f: number, t: number) => {
    const mask = keysFrom.length - 1;
    for (let h = hash(f, t, mask); ; h = (h + 1) & mask) {
      const k = keysFrom[h]!;
      if (k === 0) return false;
      if (k === f && keysTo[h] === t) return true;
    }
  };
  const insert = (f: number, t: number) => {
    const mask = keysFrom.length - 1;
    for (let h = hash(f, t, mask); ; h = (h + 1) & mask) {
      const k = keysFrom[h]!;
      if (k === 0) {
        keysFrom[h] = f;
        keysTo[h] = t;
        if (++used * 2 > keysFrom.length) rehash();
        return;
      }
      if (k === f && keysTo[h] === t) return;
    }
  };
  const rehash = (size = keysFrom.length * 2) => {
    const oldF = keysFrom;
    const oldT = keysTo;
    keysFrom = new Int32Array(size);
    keysTo = new Int32Array(size);
    used = 0;
    for (let i = 0; i < oldF.length; i++) if (oldF[i] !== 0) insert(oldF[i]!, oldT[i]!);
  };
  const grow = (seq: number) => {
    let n = from.length;
    while (n <= seq) n *= 2;
    const f = new Int32Array(n), t = new Int32Array(n), s = new Uint8Array(n);
    f.set(from); t.set(to); s.set(state);
    from = f; to = t; state = s;
  };
  // User ids are offset by one so 0 can mean an empty slot.
  let likes = 0;
  const scan = (out: number[]) => {
    let s = frontier + 1;
    if (s >= state.length || state[s] === 0) return;
    // Sized for every like so far, as the gateway does, so the scan never rehashes.
    let size = keysFrom.length;
    while (likes * 2 > size) size *= 2;
    if (size > keysFrom.length) rehash(size);
    for (; s < state.length && state[s] !== 0; s++) {
      if (state[s] !== 2) continue;
      if (has(to[s]!, from[s]!)) out.push(s);
      insert(from[s]!, to[s]!);
    }
    frontier = s - 1;
  };

  const dial = (port: number) => new Promise<Socket>((resolve, reject) => {
    const s = connect(port, host, () => resolve(s));
    s.once('error', reject);
  });
  const [listener, source] = await Promise.all([dial(listenerPort), dial(sourcePort)]);
  listener.setNoDelay(true);
  let begun = false;
  let pending: number[] = [];
  const send = (matches: number[]) => {
    if (!begun) {
      for (const m of matches) pending.push(m);
      return;
    }
    if (matches.length) listener.write(matches.join('\n') + '\n');
  };
  const answer = new Promise<number>((resolve) => {
    let text = '';
    listener.setEncoding('latin1');
    listener.on('data', (d: string) => {
      text += d;
      if (!begun && text.includes('MATCH BEGIN\n')) {
        begun = true;
        send(pending);
        pending = [];
      }
      if (text.includes('MATCH END - OK')) resolve(0);
      else if (text.includes('MATCH END - ERROR')) resolve(1);
    });
    listener.on('close', () => resolve(1));
  });

  const carry = Buffer.alloc(256);
  let carried = 0;
  const line = (b: Buffer, at: number, end: number) => {
    const c = b[at]!;
    if (c < 48 || c > 57) return; // EVENT BEGIN / EVENT END
    let p = at, seq = 0;
    while (b[p] !== 124) seq = seq * 10 + b[p++]! - 48;
    p++;
    const liked = b[p + 5] === 76 /* L of LIKE_LIKED */;
    while (b[p] !== 124) p++;
    p++;
    let f = 0;
    while (b[p] !== 124) f = f * 10 + b[p++]! - 48;
    p++;
    let t = 0;
    while (p < end) t = t * 10 + b[p++]! - 48;
    if (seq >= state.length) grow(seq);
    from[seq] = f + 1;
    to[seq] = t + 1;
    state[seq] = liked ? 2 : 1;
    if (liked) likes++;
  };
  source.on('data', (chunk: Buffer) => {
    let pos = 0;
    if (carried) {
      const nl = chunk.indexOf(10);
      chunk.copy(carry, carried, 0, nl);
      line(carry, 0, carried + nl);
      carried = 0;
      pos = nl + 1;
    }
    for (;;) {
      const nl = chunk.indexOf(10, pos);
      if (nl < 0) break;
      line(chunk, pos, nl);
      pos = nl + 1;
    }
    if (pos < chunk.length) carried = chunk.copy(carry, 0, pos);
    const out: number[] = [];
    scan(out);
    send(out);
  });
  const code = await answer;
  source.destroy();
  listener.destroy();
  return code;
}

// ---------------------------------------------------------------- the bench (the referee)

interface Contestant {
  name: 'troupe' | 'floor';
  run(round: GeneratedRound): Promise<HarnessResult & { peakRssMiB?: number }>;
}

/** Starts the contestant as a child process dialling a fresh listening harness, and plays one round. */
function contestant(name: 'troupe' | 'floor'): Contestant {
  return {
    name,
    async run(round) {
      const harness = await listenAsHarness({ sourcePort: 0, listenerPort: 0 });
      const child = spawn(process.execPath, ['--max-old-space-size=4096', SELF, name, String(harness.sourcePort), String(harness.listenerPort)], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, TROUPE_LOG_LEVEL: process.env.TROUPE_LOG_LEVEL ?? 'warn' },
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
      try {
        const result = await harness.play(round, { timeoutMs: 600_000 });
        await exited;
        const rss = /peak rss (\d+) MiB/.exec(out);
        return { ...result, peakRssMiB: rss ? Number(rss[1]) : undefined };
      } finally {
        child.kill();
        await harness.close();
      }
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function compare(label: string, round: GeneratedRound, runs: number): Promise<BenchResult[]> {
  const troupe = contestant('troupe');
  const fl = contestant('floor');
  const times: Record<'troupe' | 'floor', number[]> = { troupe: [], floor: [] };
  for (let i = 0; i < runs; i++) {
    // Alternate the order so neither always runs on a warmer machine.
    for (const c of i % 2 ? [fl, troupe] : [troupe, fl]) {
      const r = await c.run(round);
      if (r.answer !== 'MATCH END - OK') throw new Error(`${c.name} on ${label}: ${r.answer} ${r.problem ?? ''}`);
      times[c.name].push(r.ms);
    }
  }
  const t = median(times.troupe);
  const f = median(times.floor);
  return [
    { bench: 'dating', metric: `${label}: floor (no actors) to MATCH END - OK`, value: Math.round(f), unit: 'ms' },
    { bench: 'dating', metric: `${label}: troupe connect mode to MATCH END - OK`, value: Math.round(t), unit: 'ms', baseline: Math.round(f), ratio: Number((t / f).toFixed(2)), target: label.startsWith('1,000,000 events, 9,000 users, full') ? '<= 1.5' : undefined },
  ];
}

export async function run(opts: { json: boolean; quick: boolean; args: string[] }): Promise<BenchResult[]> {
  const runs = opts.quick ? 3 : 5;
  const rows: BenchResult[] = [];
  const main = generateRound({ events: 1_000_000, users: 9_000, seed: 42, shuffle: 'full' });
  rows.push(...(await compare('1,000,000 events, 9,000 users, full shuffle', main, runs)));
  if (!opts.quick) {
    const windowed = generateRound({ events: 1_000_000, users: 9_000, seed: 43, shuffle: 'windowed', window: 10_000 });
    rows.push(...(await compare('1,000,000 events, 9,000 users, windowed 10,000', windowed, 3)));
    const dense = generateRound({ events: 1_000_000, users: 1_000, seed: 44, shuffle: 'full', answerRate: 0.1 });
    rows.push(...(await compare('1,000,000 events, 1,000 users, answer rate 0.1, full shuffle', dense, 3)));
    const big = generateRound({ events: 10_000_000, users: 90_000, seed: 45, shuffle: 'full' });
    const r = await contestant('troupe').run(big);
    rows.push({ bench: 'dating', metric: '10,000,000 events, 90,000 users, full shuffle: troupe to MATCH END - OK', value: Math.round(r.ms), unit: 'ms', target: r.answer === 'MATCH END - OK' ? 'OK' : r.answer });
    rows.push({ bench: 'dating', metric: '10,000,000 events, 90,000 users: troupe peak RSS', value: r.peakRssMiB ?? -1, unit: 'MiB', target: '<= 2048' });
  }
  return rows;
}

// ---------------------------------------------------------------- as a contestant process

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const [who, sourcePort, listenerPort] = process.argv.slice(2);
  if (who === 'floor') {
    process.exitCode = await floor('127.0.0.1', Number(sourcePort), Number(listenerPort));
  } else if (who === 'troupe') {
    const { commands } = await import('../../gateways/dating/commands.js');
    process.exitCode = await commands.dating!.run(
      { connect: '127.0.0.1', 'dating-source-port': Number(sourcePort), 'dating-listener-port': Number(listenerPort), 'dating-max-events': 50_000_000, 'dating-source-idle': 60_000, shards: 0 },
      [],
    );
  }
}
