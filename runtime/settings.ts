// Settings: a schema with defaults, read from flags, environment variables (TROUPE_*) and an
// optional JSON file, validated once at the door with messages a person can act on.

import { readFileSync } from 'node:fs';
import { ConfigError } from './errors.js';

export type SettingKind = 'port' | 'int' | 'number' | 'string' | 'url' | 'list' | 'bool' | 'duration' | 'enum';

export interface SettingSpec {
  /** Kebab-case: `carts-port` is `--carts-port`, `TROUPE_CARTS_PORT`, and `carts-port` or `cartsPort` in the file. */
  name: string;
  kind: SettingKind;
  default: string | number | boolean | string[] | undefined;
  description: string;
  /** For `enum` (one of) and `list` (each of). */
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** For `url`: a value shown when the one given is not a URL. */
  example?: string;
}

export type SettingValues = Record<string, string | number | boolean | string[] | undefined>;

export function envName(name: string): string {
  return 'TROUPE_' + name.toUpperCase().replace(/-/g, '_');
}

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** `500ms`, `3s`, `2m`, `1h` or a bare number of milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  return Math.round(n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000));
}

function coerce(spec: SettingSpec, raw: unknown, source: string): { value?: SettingValues[string]; problem?: string } {
  const shown = typeof raw === 'string' ? `"${raw}"` : JSON.stringify(raw);
  const where = `${source} ${shown}`;
  switch (spec.kind) {
    case 'port':
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      const min = spec.min ?? (spec.kind === 'port' ? 0 : Number.MIN_SAFE_INTEGER);
      const max = spec.max ?? (spec.kind === 'port' ? 65535 : Number.MAX_SAFE_INTEGER);
      if (!Number.isInteger(n) || n < min || n > max) {
        const what = spec.kind === 'port' ? `a TCP port from ${min} to ${max} (0: any free port)` : `a whole number from ${min} to ${max}`;
        return { problem: `got ${where}; expected ${what}` };
      }
      return { value: n };
    }
    case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?(\d+\.?\d*|\.\d+)$/.test(raw.trim()) ? Number(raw) : NaN;
      const min = spec.min ?? -Infinity;
      const max = spec.max ?? Infinity;
      if (!Number.isFinite(n) || n < min || n > max) return { problem: `got ${where}; expected a number from ${min} to ${max}` };
      return { value: n };
    }
    case 'duration': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? parseDuration(raw) : undefined;
      if (n === undefined || !Number.isFinite(n) || n < (spec.min ?? 0) || n > (spec.max ?? Number.MAX_SAFE_INTEGER)) {
        return { problem: `got ${where}; expected a duration like 500ms, 3s, 2m${spec.min !== undefined ? ` of at least ${spec.min} ms` : ''}` };
      }
      return { value: n };
    }
    case 'bool': {
      if (typeof raw === 'boolean') return { value: raw };
      const s = String(raw).toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(s)) return { value: true };
      if (['0', 'false', 'no', 'off'].includes(s)) return { value: false };
      return { problem: `got ${where}; expected true or false` };
    }
    case 'url': {
      if (typeof raw !== 'string' || raw === '') return { problem: `got ${where}; expected a URL` };
      try {
        new URL(raw);
      } catch {
        return { problem: `got ${where}; expected a URL${spec.example === undefined ? '' : ` such as ${spec.example}`}` };
      }
      return { value: raw };
    }
    case 'enum': {
      const s = String(raw);
      if (!spec.choices?.includes(s)) return { problem: `got ${where}; expected one of ${spec.choices?.join(', ')}` };
      return { value: s };
    }
    case 'list': {
      const items = Array.isArray(raw) ? raw.map(String) : String(raw).split(',').map((s) => s.trim()).filter(Boolean);
      const bad = spec.choices ? items.filter((i) => !spec.choices!.includes(i)) : [];
      if (bad.length) return { problem: `got ${where}; ${bad.map((b) => `"${b}"`).join(', ')} not known, expected a comma-separated list of ${spec.choices!.join(', ')}` };
      return { value: items };
    }
    case 'string':
      return { value: String(raw) };
  }
}

export interface SettingSources {
  argv: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** A JSON file given with --config (or TROUPE_CONFIG). */
  configFlag?: boolean;
}

/**
 * Reads settings by precedence flags > environment > file > default. Unknown flags and every bad
 * value are reported together, in one ConfigError, so a person fixes them in one go.
 * Returns the values and the positional arguments left over.
 */
export function readSettings(specs: readonly SettingSpec[], sources: SettingSources): { values: SettingValues; rest: string[] } {
  const env = sources.env ?? process.env;
  const byName = new Map(specs.map((s) => [s.name, s]));
  const problems: string[] = [];
  const flags = new Map<string, string | boolean>();
  const rest: string[] = [];
  let configPath: string | undefined = env.TROUPE_CONFIG;

  const argv = sources.argv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      rest.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    let value: string | boolean | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (name === 'config') {
      configPath = value === undefined ? argv[++i] : String(value);
      continue;
    }
    const spec = byName.get(name) ?? (name.startsWith('no-') ? byName.get(name.slice(3)) : undefined);
    if (!spec) {
      problems.push(`unknown option --${name} (see --help for the settings this command takes)`);
      if (value === undefined && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) i++;
      continue;
    }
    if (spec.kind === 'bool' && value === undefined) {
      value = !name.startsWith('no-');
    } else if (value === undefined) {
      value = argv[++i];
      if (value === undefined) {
        problems.push(`option --${name} needs a value (${spec.description})`);
        continue;
      }
    }
    // A list given several times is the union, in order: `--dns a --dns b` is `--dns a,b`.
    if (spec.kind === 'list' && flags.has(spec.name)) value = `${String(flags.get(spec.name))},${String(value)}`;
    flags.set(spec.name, value);
  }

  let file: Record<string, unknown> = {};
  if (configPath) {
    try {
      file = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
      if (typeof file !== 'object' || file === null || Array.isArray(file)) throw new Error('the top level is not an object');
    } catch (err) {
      problems.push(`config file ${configPath} cannot be read as JSON: ${(err as Error).message}`);
      file = {};
    }
    for (const key of Object.keys(file)) {
      if (!byName.has(key) && !specs.some((s) => camel(s.name) === key)) problems.push(`config file ${configPath}: unknown setting "${key}"`);
    }
  }

  const values: SettingValues = {};
  for (const spec of specs) {
    const e = envName(spec.name);
    let raw: unknown;
    let source: string;
    if (flags.has(spec.name)) {
      raw = flags.get(spec.name);
      source = `--${spec.name}`;
    } else if (env[e] !== undefined && env[e] !== '') {
      raw = env[e];
      source = e;
    } else if (file[spec.name] !== undefined || file[camel(spec.name)] !== undefined) {
      raw = file[spec.name] ?? file[camel(spec.name)];
      source = `"${spec.name}" in ${configPath}`;
    } else {
      values[spec.name] = spec.default;
      continue;
    }
    const { value, problem } = coerce(spec, raw, source);
    if (problem) problems.push(`setting ${spec.name}: ${problem}`);
    else values[spec.name] = value;
  }
  if (problems.length) throw new ConfigError(problems.join('\n'));
  return { values, rest };
}

/** The help text: every setting, its flag, environment variable and default. */
export function describeSettings(specs: readonly SettingSpec[]): string {
  const rows = specs.map((s) => {
    const def = s.default === undefined ? '' : ` (default: ${Array.isArray(s.default) ? s.default.join(',') : String(s.default)})`;
    return `  --${s.name.padEnd(24)} ${s.description}${def}\n  ${' '.repeat(26)} env ${envName(s.name)}`;
  });
  return rows.join('\n');
}
