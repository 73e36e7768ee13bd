#!/usr/bin/env node
// `troupe`: the command that wires a node together from configuration, and the tools around it.

import { ConfigError, describeSettings, readSettings, type SettingSpec, type SettingValues } from '../runtime/index.js';
import { GATEWAY_COMMANDS, GATEWAYS } from './gateways.js';
import { inspectSettings, runInspect } from './inspect-command.js';
import { runNode } from './node-command.js';
import { nodeSettings } from './node-settings.js';

interface Command {
  summary: string;
  settings: SettingSpec[];
  run(values: SettingValues, rest: string[]): Promise<number>;
}

const BUILTIN: Record<string, () => Promise<Command>> = {
  node: async () => ({
    summary: 'start a node with every service (see --gateways) on embedded storage, or in a cluster with --redis',
    settings: nodeSettings(GATEWAYS),
    run: (values) => runNode(values, GATEWAYS),
  }),
  inspect: async () => ({
    summary: 'a REPL onto a running node or cluster: nodes, ring, partitions, stats, actors, state, ask, tell',
    settings: inspectSettings,
    run: (values, rest) => runInspect(values, rest),
  }),
  chaos: async () => (await import('../ops/chaos/command.js')).chaosCommand,
  recover: async () => (await import('./recover-command.js')).recoverCommand,
  certs: async () => (await import('./certs-command.js')).certsCommand,
  // The nodes troupe chaos starts: every gateway plus the chaos counters (a durable actor type of its own).
  'chaos-node': async () => {
    const { chaosCounterGateway } = await import('../ops/chaos/counter-gateway.js');
    const gateways = [...GATEWAYS, chaosCounterGateway];
    return { summary: 'a node as troupe chaos starts it: troupe node plus the chaos-counter gateway (durable counters for the verdict)', settings: nodeSettings(gateways), run: (values) => runNode(values, gateways) };
  },
};

async function loadCommand(name: string): Promise<Command | undefined> {
  if (BUILTIN[name]) return BUILTIN[name]!();
  const path = GATEWAY_COMMANDS[name];
  if (!path) return undefined;
  const mod = (await import(path)) as { commands: Record<string, Command> };
  return mod.commands[name];
}

async function usage(): Promise<string> {
  const lines = ['usage: troupe <command> [--setting value ...]', '', 'commands:'];
  for (const name of [...Object.keys(BUILTIN), ...Object.keys(GATEWAY_COMMANDS)]) {
    let summary = '';
    try {
      summary = (await loadCommand(name))?.summary ?? '';
    } catch {
      summary = '(unavailable)';
    }
    lines.push(`  ${name.padEnd(18)} ${summary}`);
  }
  lines.push('', 'every setting is also read from TROUPE_<SETTING> and from a JSON file given with --config FILE;', "'troupe <command> --help' lists a command's settings.");
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write((await usage()) + '\n');
    return name ? 0 : 2;
  }
  const command = await loadCommand(name);
  if (!command) {
    process.stderr.write(`troupe: unknown command "${name}"\n\n${await usage()}\n`);
    return 2;
  }
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`usage: troupe ${name} [--setting value ...]\n\n${command.summary}\n\nsettings:\n${describeSettings(command.settings)}\n`);
    return 0;
  }
  // A setting refused, whether alone (by readSettings) or with the others (by the command as it
  // starts), is the same kind of answer: what is wrong and what to do, exit code 2.
  try {
    const parsed = readSettings(command.settings, { argv: args });
    return await command.run(parsed.values, parsed.rest);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`troupe ${name}: the configuration is not valid:\n  ${err.message.split('\n').join('\n  ')}\n`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`troupe: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
