// `npm run bench -- tracing [--quick]`: what OpenTelemetry tracing costs. The same requests (a
// gateway-like span around an ask to one of 10,000 actors, 1,000 in flight) on a node without
// tracing, then on nodes that trace at ratio 0 (tracing on, nothing sampled), 0.01 and 1 (every
// request: its span, the ask's and the turn's). Spans go over OTLP/HTTP to a sink in a child
// process that only counts them, so the collector's work is not charged to the node.

import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inServerSpan, startNode, type TroupeNode } from '../../runtime/index.js';
import { Cell } from './fixtures/cell.js';
import type { BenchOptions, BenchResult } from './run.js';

const CELL = new URL('./fixtures/cell.js', import.meta.url).href;
const ACTORS = 10_000;
const IN_FLIGHT = 1_000;

/** The sink: a child process taking OTLP/HTTP JSON posts, counting the spans in them. */
export class SpanSink {
  readonly #child: ChildProcess;
  readonly endpoint: string;

  private constructor(child: ChildProcess, port: number) {
    this.#child = child;
    this.endpoint = `http://127.0.0.1:${port}/v1/traces`;
  }

  static async start(): Promise<SpanSink> {
    const child = fork(new URL('./fixtures/span-sink.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const [port] = (await once(child, 'message')) as [number];
    return new SpanSink(child, port);
  }

  async count(): Promise<number> {
    this.#child.send('count');
    const [n] = (await once(this.#child, 'message')) as [number];
    return n;
  }

  stop(): void {
    this.#child.kill();
  }
}

/** Requests as a gateway makes them: a SERVER span (when tracing) around an ask. Returns requests/s. */
async function requests(node: TroupeNode, count: number): Promise<number> {
  const refs = Array.from({ length: ACTORS }, (_, i) => node.ref(Cell, `t-${i}`));
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < count) {
      const i = next++;
      await inServerSpan('bench.request', undefined, {}, () => refs[i % ACTORS]!.ask('echo', i));
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return count / ((performance.now() - t0) / 1000);
}

export async function run(o: BenchOptions): Promise<BenchResult[]> {
  const count = o.quick ? 100_000 : 500_000;
  const rows: BenchResult[] = [];
  const sink = await SpanSink.start();
  const say = (msg: string) => process.stderr.write(`  tracing: ${msg}\n`);
  try {
    const variants: { name: string; ratio?: number }[] = [{ name: 'no tracing' }, { name: 'tracing, ratio 0', ratio: 0 }, { name: 'tracing, ratio 0.01', ratio: 0.01 }, { name: 'tracing, ratio 1', ratio: 1 }];
    let baseline = NaN;
    for (const v of variants) {
      const dataDir = mkdtempSync(join(tmpdir(), 'troupe-bench-tracing-'));
      const node = await startNode({
        dataDir,
        actorModules: [CELL],
        askTimeoutMs: 60_000,
        tracing: v.ratio === undefined ? undefined : { endpoint: sink.endpoint, sampleRatio: v.ratio },
      });
      try {
        const spansBefore = await sink.count();
        const warmUp = Math.round(count / 10);
        await requests(node, warmUp); // activations, JIT
        const rate = await requests(node, count);
        await node.stop(); // every thread sends its last spans
        const spans = (await sink.count()) - spansBefore;
        if (v.ratio === undefined) baseline = rate;
        say(`${v.name}: ${Math.round(rate)} requests/s, ${spans} spans exported`);
        rows.push({ bench: 'tracing', metric: `requests/s (a span around an ask, ${IN_FLIGHT} in flight), ${v.name}`, value: Math.round(rate), unit: 'req/s', baseline: Math.round(baseline), ratio: rate / baseline });
        if (v.ratio !== undefined && v.ratio > 0) {
          // Each sampled request makes 3 spans (request, ask, turn); a full export queue drops spans.
          const expected = 3 * (warmUp + count) * v.ratio;
          rows.push({ bench: 'tracing', metric: `  spans exported, warm-up included / 3 per sampled request (${v.name})`, value: spans, unit: 'spans', baseline: Math.round(expected), ratio: spans / expected });
        }
      } finally {
        await node.stop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
  } finally {
    sink.stop();
  }
  return rows;
}
