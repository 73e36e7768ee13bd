// `troupe inspect`: a REPL onto a running node or cluster. Reads commands from --eval, from
// standard input, or at a prompt on a terminal, runs each in an InspectSession and prints the
// result (text, or one JSON object per line with --json). A failed command is reported and the
// session goes on; the exit code says whether every command succeeded.

import { accessSync, constants } from 'node:fs';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { clusterKeys } from '../runtime/cluster/keys.js';
import { ConfigError, type Logger, type RedisEndpoint, type SettingSpec, type SettingValues } from '../runtime/index.js';
import { RedisMembers } from '../runtime/inspector/redis-members.js';
import { redisEndpointFrom, redisSettings } from '../runtime/redis-settings.js';
import { InspectSession, splitCommands, type CommandResult } from '../runtime/inspector/session.js';
import { plural } from '../runtime/inspector/text.js';

const DEFAULT_NODE = '127.0.0.1:7070';

export const inspectSettings: SettingSpec[] = [
  { name: 'node', kind: 'string', default: undefined, description: `HOST:PORT of a node's cluster port; the other members are found through it (default ${DEFAULT_NODE} unless --redis is given)` },
  { name: 'redis', kind: 'url', default: undefined, example: 'redis://127.0.0.1:6379', description: 'find the members in this Redis instead (with --cluster); read only' },
  ...redisSettings,
  { name: 'cluster', kind: 'string', default: 'troupe', description: 'the cluster to inspect, with --redis (or --redis-sentinels and --redis-master)' },
  { name: 'eval', kind: 'string', default: undefined, description: 'run these commands (separated by ; or new lines) and exit; without it, commands come from standard input, at a prompt on a terminal' },
  { name: 'tls-ca', kind: 'string', default: undefined, description: "mutual TLS: the cluster's CA certificate, PEM; the nodes' certificates must be issued by it" },
  { name: 'tls-cert', kind: 'string', default: undefined, description: 'mutual TLS: your certificate, PEM, issued by the same CA (troupe certs issue --name YOU)' },
  { name: 'tls-key', kind: 'string', default: undefined, description: 'mutual TLS: the private key of --tls-cert, PEM' },
  { name: 'json', kind: 'bool', default: false, description: 'print each result as one JSON object per line' },
  { name: 'timeout', kind: 'duration', min: 1, max: 600_000, default: 3000, description: 'how long a call to a node may take' },
  { name: 'ask-timeout', kind: 'duration', min: 1, max: 60_000, default: 5000, description: "how long ask waits for the actor's reply (at most 60s)" },
];

/** The checks readSettings cannot make alone; every problem in one ConfigError. */
function checkInspectSettings(values: SettingValues, rest: string[]): RedisEndpoint | undefined {
  const problems: string[] = [];
  let redis: RedisEndpoint | undefined;
  try {
    redis = redisEndpointFrom(values);
  } catch (err) {
    problems.push((err as Error).message);
  }
  const node = values.node as string | undefined;
  if (node !== undefined) {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):(\d+)$/.exec(node);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      problems.push(`setting node: got "${node}"; expected HOST:PORT of a node's cluster port, like ${DEFAULT_NODE} (the port the node prints as "cluster")`);
    }
  }
  if (node !== undefined && (values.redis !== undefined || values['redis-sentinels'] !== undefined)) {
    problems.push('settings node and redis: both are set (flags or TROUPE_NODE / TROUPE_REDIS / TROUPE_REDIS_SENTINELS); give --node HOST:PORT to go through one node, or --redis URL (or --redis-sentinels and --redis-master) --cluster NAME to find the members in Redis, not both');
  }
  try {
    clusterKeys(String(values.cluster));
  } catch (err) {
    problems.push(`setting cluster: ${(err as Error).message}`);
  }
  const tls = ['tls-ca', 'tls-cert', 'tls-key'];
  const given = tls.filter((n) => values[n] !== undefined);
  if (given.length > 0 && given.length < tls.length) {
    problems.push(`settings ${tls.join(', ')}: give all three (mutual TLS) or none (plaintext); missing ${tls.filter((n) => values[n] === undefined).map((n) => `--${n}`).join(' and ')}`);
  }
  for (const n of given) {
    try {
      accessSync(String(values[n]), constants.R_OK);
    } catch (err) {
      problems.push(`setting ${n}: cannot read ${String(values[n])} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  for (const word of rest) problems.push(`unexpected argument "${word}": give commands with --eval "stats; ring" or on standard input`);
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return redis;
}

function print(result: CommandResult, json: boolean): void {
  if (json) {
    const { command, ok, data, error, warnings } = result;
    process.stdout.write(JSON.stringify({ command, ok, data, error, warnings }) + '\n');
    return;
  }
  if (result.ok && result.text !== '') process.stdout.write(result.text + '\n');
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  if (!result.ok) process.stderr.write(`error: ${result.error}\n`);
}

export async function runInspect(values: SettingValues, rest: string[]): Promise<number> {
  let endpoint: RedisEndpoint | undefined;
  try {
    endpoint = checkInspectSettings(values, rest);
  } catch (err) {
    process.stderr.write(`troupe inspect: the configuration is not valid:\n  ${(err as Error).message.split('\n').join('\n  ')}\n`);
    return 2;
  }
  const json = values.json === true;
  let redis: RedisMembers | undefined;
  if (endpoint !== undefined) {
    try {
      // The calls that fail say what happened; the client's own lines (errors only) go to standard error.
      const log = pino({ level: 'error', base: undefined }, pino.destination(2)) as unknown as Logger;
      redis = await RedisMembers.connect(endpoint, String(values.cluster), log);
    } catch (err) {
      process.stderr.write(`troupe inspect: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const session = new InspectSession({
    seed: redis ? undefined : String(values.node ?? DEFAULT_NODE),
    redis,
    timeoutMs: Number(values.timeout),
    askTimeoutMs: Number(values['ask-timeout']),
    tls: values['tls-ca'] === undefined ? undefined : { ca: String(values['tls-ca']), cert: String(values['tls-cert']), key: String(values['tls-key']) },
  });
  let failed = 0;
  const runLine = async (line: string): Promise<void> => {
    const result = await session.run(line);
    if (!result) return;
    if (!result.ok) failed++;
    print(result, json);
  };
  try {
    if (values.eval !== undefined) {
      for (const line of splitCommands(String(values.eval))) {
        await runLine(line);
        if (session.finished) break;
      }
    } else if (process.stdin.isTTY) {
      await interactive(session, runLine, redis ? `cluster "${redis.cluster}" in Redis` : String(values.node ?? DEFAULT_NODE));
      failed = 0; // at a prompt, failures were seen as they came
    } else {
      const lines = createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity });
      for await (const line of lines) {
        await runLine(line);
        if (session.finished) break;
      }
      lines.close();
    }
  } finally {
    session.close();
    redis?.close();
  }
  return failed > 0 ? 1 : 0;
}

async function interactive(session: InspectSession, runLine: (line: string) => Promise<void>, target: string): Promise<void> {
  try {
    const members = await session.members();
    process.stdout.write(`troupe inspect: ${plural(members.length, 'node')} through ${target}; type help for the commands, exit to leave\n`);
  } catch (err) {
    process.stdout.write(`troupe inspect: ${(err as Error).message}\n(the commands try again; type help for them, exit to leave)\n`);
  }
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    prompt: 'troupe> ',
    historySize: 500,
    completer: (line: string): [string[], string] => {
      const [first, ...more] = line.split(/\s+/);
      if (more.length === 0) {
        const hits = InspectSession.commandNames().filter((c) => c.startsWith(first ?? ''));
        return [hits, line];
      }
      const last = more[more.length - 1] ?? '';
      const hits = session.actorTypes().map((t) => t + '/').filter((t) => t.startsWith(last));
      return [hits, last];
    },
  });
  rl.on('SIGINT', () => rl.close());
  rl.prompt();
  for await (const line of rl) {
    await runLine(line);
    if (session.finished) break;
    rl.prompt();
  }
  rl.close();
}
