// `troupe chaos`: the command-table entry (summary, settings, run) that bin/troupe.ts registers.
// Exit codes: 0 nothing acknowledged was lost or duplicated, 1 something was, 2 the run could not
// begin (bad settings, Redis or PostgreSQL not answering, a node that does not start), 130 Ctrl-C.

import { randomInt } from 'node:crypto';
import type { SettingSpec, SettingValues } from '../../runtime/settings.js';
import { ChaosInterrupted, ChaosStartError, formatVerdict, runChaos } from './run.js';
import { CHAOS_SETTINGS, chaosOptionsFrom } from './settings.js';

export const chaosCommand: { summary: string; settings: SettingSpec[]; run(values: SettingValues, rest: string[]): Promise<number> } = {
  summary: 'start a cluster of nodes, kill, pause and restart them under load, and check that nothing acknowledged was lost',
  settings: CHAOS_SETTINGS,
  async run(values: SettingValues, rest: string[]): Promise<number> {
    const { options, problems } = chaosOptionsFrom(values, () => randomInt(1, 2 ** 31 - 1));
    if (rest.length) problems.push(`unexpected argument${rest.length > 1 ? 's' : ''} ${rest.map((r) => `"${r}"`).join(' ')}; every setting is a --flag (see troupe chaos --help)`);
    if (!options || problems.length) {
      process.stderr.write(`troupe chaos: the configuration is not valid:\n  ${problems.join('\n  ')}\n`);
      return 2;
    }

    const abort = new AbortController();
    let interrupts = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      interrupts++;
      if (interrupts > 1) {
        process.stderr.write(`troupe chaos: second ${signal}: exiting now (the nodes are killed on exit)\n`);
        process.exit(130);
      }
      process.stderr.write(`troupe chaos: ${signal}: stopping the nodes and removing what the run made (again to exit at once)\n`);
      abort.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const out = (line: string) => process.stdout.write(line + '\n');
    try {
      const report = await runChaos(options, { out }, abort.signal);
      out('');
      out(formatVerdict(report));
      if (options.json) out(JSON.stringify(report));
      return report.ok ? 0 : 1;
    } catch (err) {
      if (err instanceof ChaosInterrupted) {
        process.stderr.write('troupe chaos: interrupted; no verdict\n');
        return 130;
      }
      if (err instanceof ChaosStartError) {
        process.stderr.write(`troupe chaos: the run could not begin: ${err.message}\n`);
        return 2;
      }
      throw err;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
