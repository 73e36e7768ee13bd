// The dating gateway's subcommands: `troupe dating --connect HOST` (one round against a listening
// harness) and `troupe dating-harness` (the project's own Event Source and Event Listener).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootLogger, startNode, type SettingSpec, type SettingValues } from '../../runtime/index.js';
import { playConnectedRound } from './connect.js';
import { generateRound, type ShuffleMode } from './generator.js';
import { dialAsHarness, listenAsHarness, type HarnessResult } from './harness.js';
import { datingGateway } from './index.js';
import { DATING_SETTINGS, LISTENER_PORT, SOURCE_PORT } from './settings.js';

export interface Command {
  summary: string;
  settings: SettingSpec[];
  run(values: SettingValues, rest: string[]): Promise<number>;
}

const CONNECT: SettingSpec = { name: 'connect', kind: 'string', default: undefined, description: 'Host of the harness to dial (its Event Source and Event Listener ports)' };
const DIAL_FOR: SettingSpec = { name: 'dating-dial-for', kind: 'duration', default: 10_000, min: 0, description: 'Keep dialling a harness that is not listening yet for this long' };
const SHARDS: SettingSpec = { name: 'shards', kind: 'int', default: 0, min: 0, max: 256, description: 'Worker threads for the match-pair actors (0: one per core)' };

function mib(bytes: number): number {
  return Math.round(bytes / 1048576);
}

const dating: Command = {
  summary: 'Play one dating round against a harness that listens (troupe dating --connect HOST); exit 0 on MATCH END - OK',
  settings: [CONNECT, ...DATING_SETTINGS, DIAL_FOR, SHARDS],
  async run(values, rest) {
    const host = (values.connect as string | undefined) ?? rest[0];
    if (!host) {
      process.stderr.write('troupe dating: give the harness host with --connect HOST\n');
      return 2;
    }
    const log = rootLogger().child({ command: 'dating' });
    const dataDir = mkdtempSync(join(tmpdir(), 'troupe-dating-'));
    const shards = values.shards as number;
    const node = await startNode({ dataDir, actorModules: datingGateway.actorModules, shards: shards > 0 ? shards : undefined, log });
    try {
      const outcome = await playConnectedRound({
        system: node,
        log,
        host,
        sourcePort: values['dating-source-port'] as number,
        listenerPort: values['dating-listener-port'] as number,
        maxSeq: values['dating-max-events'] as number,
        sourceIdleMs: values['dating-source-idle'] as number,
        dialForMs: (values['dating-dial-for'] as number | undefined) ?? 10_000,
      });
      const rss = mib(process.resourceUsage().maxRSS * 1024);
      const verdict = outcome.end === 'ok' ? 'MATCH END - OK' : outcome.end === 'error' ? 'MATCH END - ERROR' : `no OK (${outcome.reason ?? outcome.end})`;
      process.stdout.write(`dating round ${verdict}: ${outcome.events} events, ${outcome.matches} matches, ${outcome.actorMessages} actor messages, ${outcome.ms} ms, peak rss ${rss} MiB\n`);
      return outcome.end === 'ok' ? 0 : 1;
    } catch (err) {
      process.stdout.write(`dating round failed: ${(err as Error).message}\n`);
      return 1;
    } finally {
      await node.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
};

const HARNESS_SETTINGS: SettingSpec[] = [
  { name: 'events', kind: 'int', default: 1_000_000, min: 0, max: 100_000_000, description: 'Like events per round' },
  { name: 'users', kind: 'int', default: 9_000, min: 2, max: 4_000_000, description: 'Users the likes are drawn from' },
  { name: 'seed', kind: 'int', default: 1, min: 0, max: 0xffffffff, description: 'Seed of the generator (same seed, same round)' },
  { name: 'shuffle', kind: 'enum', default: 'full', choices: ['full', 'windowed', 'none'], description: 'Arrival order of the events' },
  { name: 'window', kind: 'int', default: 1000, min: 2, description: 'Block length for --shuffle windowed' },
  { name: 'answer-rate', kind: 'string', default: '0', description: 'Share (0..1) of events that answer an earlier like' },
  { name: 'mode', kind: 'enum', default: 'listen', choices: ['listen', 'connect'], description: 'listen: the harness listens and the solution dials in; connect: the harness dials a listening solution' },
  { name: 'host', kind: 'string', default: '127.0.0.1', description: 'Address to listen on (listen mode) or to dial (connect mode)' },
  { name: 'rounds', kind: 'int', default: 1, min: 1, max: 1000, description: 'Rounds to play, one after another (seed + round number)' },
  { ...SOURCE_PORT },
  { ...LISTENER_PORT },
];

function line(r: HarnessResult, events: number): string {
  const tail = r.problem ? ` (${r.problem})` : '';
  return `${r.answer}: ${events} events, ${r.matchesReceived}/${r.matchesExpected} matches, ${r.ms.toFixed(0)} ms${tail}\n`;
}

const datingHarness: Command = {
  summary: 'The Event Source and Event Listener of the dating game: a seeded round, checked OK or ERROR',
  settings: HARNESS_SETTINGS,
  async run(values) {
    const answerRate = Number(values['answer-rate']);
    if (!(answerRate >= 0 && answerRate <= 1)) {
      process.stderr.write(`troupe dating-harness: --answer-rate must be a number from 0 to 1, got "${String(values['answer-rate'])}"\n`);
      return 2;
    }
    const mode = values.mode as 'listen' | 'connect';
    const host = values.host as string;
    const rounds = values.rounds as number;
    const harness =
      mode === 'listen'
        ? await listenAsHarness({ host, sourcePort: values['dating-source-port'] as number, listenerPort: values['dating-listener-port'] as number })
        : undefined;
    if (harness) process.stdout.write(`harness listening: event source ${host}:${harness.sourcePort}, event listener ${host}:${harness.listenerPort}\n`);
    let failures = 0;
    try {
      for (let i = 0; i < rounds; i++) {
        const round = generateRound({
          events: values.events as number,
          users: values.users as number,
          seed: (values.seed as number) + i,
          shuffle: values.shuffle as ShuffleMode,
          window: values.window as number,
          answerRate,
        });
        const result = harness
          ? await harness.play(round)
          : await dialAsHarness(round, { host, sourcePort: values['dating-source-port'] as number, listenerPort: values['dating-listener-port'] as number });
        process.stdout.write(line(result, values.events as number));
        if (result.answer !== 'MATCH END - OK') failures++;
      }
    } finally {
      await harness?.close();
    }
    return failures === 0 ? 0 : 1;
  },
};

export const commands: Record<string, Command> = { dating, 'dating-harness': datingHarness };
