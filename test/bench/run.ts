// `npm run bench -- <name> [--json] [--quick]`: runs one benchmark module (test/bench/<name>.ts)
// and prints its rows as a table for people, or one JSON object per line with --json.

export interface BenchResult {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  /** The same measure of the reference it is compared with, in the same run. */
  baseline?: number;
  /** value / baseline (or the ratio the metric defines). */
  ratio?: number;
  /** The target, for the reader. */
  target?: string;
}

export interface BenchOptions {
  json: boolean;
  quick: boolean;
  args: string[];
}

const KNOWN = ['runtime', 'dating', 'presence', 'carts', 'who', 'events', 'cluster', 'tracing', 'dashboard'];

function fmt(n: number | undefined): string {
  if (n === undefined) return '';
  if (Number.isInteger(n) && Math.abs(n) >= 1000) return n.toLocaleString('en-US');
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  return String(Number(n.toPrecision(3)));
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const quick = argv.includes('--quick');
  const names = argv.filter((a) => !a.startsWith('--'));
  if (names.length === 0) {
    process.stderr.write(`usage: npm run bench -- <${KNOWN.join('|')}> [--json] [--quick]\n`);
    return 2;
  }
  const [name, ...args] = names;
  let mod: { run(o: BenchOptions): Promise<BenchResult[]> };
  try {
    mod = await import(`./${name}.js`);
  } catch (err) {
    process.stderr.write(`no benchmark "${name}" (${(err as Error).message}); known: ${KNOWN.join(', ')}\n`);
    return 2;
  }
  const rows = await mod.run({ json, quick, args: [...args, ...argv.filter((a) => a.startsWith('--') && a !== '--json' && a !== '--quick')] });
  if (json) {
    for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n');
  } else {
    const table = [['metric', 'value', 'unit', 'baseline', 'ratio', 'target'], ...rows.map((r) => [r.metric, fmt(r.value), r.unit, fmt(r.baseline), r.ratio === undefined ? '' : `${fmt(r.ratio)}x`, r.target ?? ''])];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    process.stdout.write(`\n${name}\n`);
    for (const [i, row] of table.entries()) {
      process.stdout.write(row.map((c, j) => (j === 1 || j === 3 || j === 4 ? c.padStart(widths[j]!) : c.padEnd(widths[j]!))).join('  ') + '\n');
      if (i === 0) process.stdout.write(widths.map((w) => '-'.repeat(w)).join('  ') + '\n');
    }
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
