// compose.yml checked offline (no container engine here): valid against the Compose
// specification's JSON schema (the copy dclint ships), every TROUPE_* variable a setting that
// `troupe node --help` knows, health-gated start order, and secrets only from the env file.

import test from 'ava';
import { Ajv } from 'ajv';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { projectRoot } from '../../runtime/index.js';

const ROOT = projectRoot();

type Doc = Record<string, any>;

function envExample(): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(join(ROOT, '.env.example'), 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!;
  }
  return vars;
}

/** Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ for a literal $. */
function interpolate(text: string, vars: Record<string, string>, missing: string[]): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (all, name: string | undefined, op: string | undefined, arg: string | undefined) => {
    if (all === '$$') return '$';
    const value = vars[name!];
    if (value !== undefined && value !== '') return value;
    if (op?.endsWith('-')) return arg ?? '';
    missing.push(name!);
    return '';
  });
}

function loadCompose(vars = envExample()): { doc: Doc; missing: string[] } {
  const missing: string[] = [];
  const text = interpolate(readFileSync(join(ROOT, 'compose.yml'), 'utf8'), vars, missing);
  return { doc: parse(text, { merge: true }) as Doc, missing };
}

function composeValidator() {
  const schema = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'dclint', 'schemas', 'compose.schema.json'), 'utf8'));
  // Draft-07, which is Ajv's own; its $schema spells the meta-schema https://, which Ajv does not know by that name.
  delete schema.$schema;
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  return ajv.compile(schema);
}

function knownSettings(): Set<string> {
  const help = execFileSync(process.execPath, [join(ROOT, 'dist', 'bin', 'troupe.js'), 'node', '--help'], { encoding: 'utf8' });
  return new Set([...help.matchAll(/env (TROUPE_[A-Z0-9_]+)/g)].map((m) => m[1]!));
}


function envOf(service: Doc): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((e: string) => [e.split('=')[0], e.split('=').slice(1).join('=')]));
  return env;
}

test('compose.yml is valid against the Compose specification schema', (t) => {
  const { doc, missing } = loadCompose();
  t.deepEqual(missing, [], 'every variable compose.yml needs is in .env.example');
  const validate = composeValidator();
  const ok = validate(doc);
  t.true(ok, JSON.stringify(validate.errors, null, 2));
});

test('the schema check refuses a broken file (it is not vacuous)', (t) => {
  const validate = composeValidator();
  const { doc } = loadCompose();
  const misspelt = structuredClone(doc);
  misspelt.services.node1.helthcheck = misspelt.services.node1.healthcheck;
  t.false(validate(misspelt), 'an unknown service key');
  const wrongType = structuredClone(doc);
  wrongType.services.redis.depends_on = 'postgres';
  t.false(validate(wrongType), 'depends_on as a string');
  const badCondition = structuredClone(doc);
  badCondition.services.node1.depends_on.redis.condition = 'service_ready';
  t.false(validate(badCondition), 'an unknown depends_on condition');
});

test('every TROUPE_* variable compose.yml sets is a setting of troupe node', (t) => {
  const known = knownSettings();
  t.true(known.has('TROUPE_REDIS') && known.has('TROUPE_CARTS_PORT'), 'the help output was parsed');
  const { doc } = loadCompose();
  const unknown: string[] = [];
  for (const [name, service] of Object.entries<Doc>(doc.services)) {
    for (const key of Object.keys(envOf(service))) {
      if (!key.startsWith('TROUPE_') || known.has(key)) continue;
      unknown.push(`${name}: ${key}`);
    }
  }
  t.deepEqual(unknown, []);
});

test('start order waits on health, and whatever runs for long restarts', (t) => {
  const { doc } = loadCompose();
  const services = doc.services as Record<string, Doc>;
  for (const [name, service] of Object.entries(services)) {
    for (const [dep, how] of Object.entries<Doc>(service.depends_on ?? {})) {
      t.truthy(services[dep], `${name} depends on ${dep}, which exists`);
      if (how.condition === 'service_healthy') t.truthy(services[dep]!.healthcheck ?? dep.startsWith('node'), `${name} waits for ${dep} healthy: ${dep} has a healthcheck`);
    }
    if (service.restart !== 'no') t.truthy(service.restart, `${name} has a restart policy`);
  }
  for (const node of ['node1', 'node2', 'node3']) {
    const s = services[node]!;
    t.truthy(s.healthcheck?.test?.join(' ').includes('/readyz'), `${node} is healthy when /readyz answers`);
    for (const dep of ['redis', 'postgres', 'mysql']) t.is(s.depends_on[dep].condition, 'service_healthy', `${node} waits for ${dep}`);
    t.is(envOf(s).TROUPE_ADVERTISE, `${node}:7070`, `${node} advertises its own name`);
    t.true(s.read_only, `${node} runs on a read-only root filesystem`);
  }
  t.deepEqual(services['dating-harness']!.profiles, ['dating']);
  t.deepEqual(services.pgadmin!.profiles, ['tools']);
  // Published on this host's loopback only: nothing but the public gateways faces the network.
  t.true(services.pgadmin!.ports.includes('127.0.0.1:5050:80'));
  t.true(services.postgres!.ports.includes('127.0.0.1:5432:5432'));
  t.true(services.mysql!.ports.includes('127.0.0.1:3306:3306'));
});

test('secrets come from files the certs service makes, Redis behind a password from the env file', (t) => {
  const raw = parse(readFileSync(join(ROOT, 'compose.yml'), 'utf8'), { merge: true }) as Doc;
  const services = raw.services as Record<string, Doc>;
  const SECRETS = '/etc/troupe/secrets';
  for (const node of ['node1', 'node2', 'node3']) {
    const s = services[node]!;
    const env = envOf(s);
    t.regex(env.TROUPE_REDIS!, /\$\{REDIS_PASSWORD:\?[^}]*\}@redis/, 'the Redis URL carries the password from .env');
    t.false('TROUPE_CARTS_SECRET' in env, `${node}: no carts secret in the environment`);
    t.false('TROUPE_INSECURE_CLUSTER' in env, `${node}: the cluster port is not plaintext`);
    // One carts secret file for every node: a token signed by one node is accepted by all.
    t.is(env.TROUPE_CARTS_SECRET_FILE, `${SECRETS}/carts-secret`);
    t.is(env.TROUPE_EVENTS_SUMMARY_TOKEN_FILE, `${SECRETS}/events-summary-token`);
    t.is(env.TROUPE_TLS_CA, `${SECRETS}/ca.pem`);
    // A node's certificate names its --node-name, the name its peers dial (TROUPE_ADVERTISE).
    t.is(env.TROUPE_TLS_CERT, `${SECRETS}/${node}.pem`);
    t.is(env.TROUPE_TLS_KEY, `${SECRETS}/${node}-key.pem`);
    t.true(s.volumes.includes(`troupe-secrets:${SECRETS}:ro`), `${node} mounts the secrets read-only`);
    t.false(s.volumes.some((v: string) => v.startsWith('troupe-ca:')), `${node} never sees the CA key`);
    t.is(s.depends_on.certs?.condition, 'service_completed_successfully', `${node} starts after the certs exist`);
    for (const p of s.ports as string[]) if (p.endsWith(':9464')) t.true(p.startsWith('127.0.0.1:'), `${node}: the ops port (${p}) is on this host only`);
  }
  const certs = loadCompose().doc.services.certs as Doc;
  t.is(certs.restart, 'no', 'the certs service runs once');
  t.deepEqual(certs.volumes, ['troupe-ca:/etc/troupe/ca', `troupe-secrets:${SECRETS}`]);
  const script = certs.command.join('\n');
  t.regex(script, /troupe certs create-ca --out \/etc\/troupe\/ca/);
  t.regex(script, /\[ -f \/etc\/troupe\/ca\/ca-key\.pem \] \|\|/, 'an existing CA is kept');
  t.regex(script, /for n in node1 node2 node3/);
  t.regex(script, /\[ -f "\/etc\/troupe\/secrets\/\$n-key\.pem" \] \|\| troupe certs issue --ca \/etc\/troupe\/ca --name "\$n" --out \/etc\/troupe\/secrets/, 'a certificate per node, kept once made');
  t.regex(script, /umask 077/, 'the files it writes are 0600');
  t.regex(script, /carts-secret events-summary-token/);
  t.regex(services.redis!.command.join(' '), /--requirepass/);
  t.true(readFileSync(join(ROOT, '.gitignore'), 'utf8').split('\n').includes('.env'), '.env is not committed');
  t.false('TROUPE_CARTS_SECRET' in envExample(), 'no carts secret in .env.example');
  const { missing } = loadCompose({});
  t.true(missing.includes('REDIS_PASSWORD'), 'without .env, compose refuses to start');
});

test('the certs script, as compose hands it to sh, makes the files once and keeps them', (t) => {
  // The script with compose's interpolation applied ($$ -> $), run by sh with a stand-in for the
  // troupe command that writes the files troupe certs writes: a second run changes nothing.
  const { doc } = loadCompose();
  const script = (doc.services.certs.command as string[]).join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'troupe-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stub = [
    'node() {',
    '  [ "$1" = troupe ] || { command node "$@"; return; }',
    '  shift',
    '  case "$2" in',
    '    create-ca) mkdir -p "$4"; echo ca > "$4/ca.pem"; echo key > "$4/ca-key.pem"; echo "create-ca" >> "$ROOT/log" ;;',
    '    issue) echo cert > "$8/$6.pem"; echo key > "$8/$6-key.pem"; echo "issue $6" >> "$ROOT/log" ;;',
    '  esac',
    '}',
  ].join('\n');
  const run = () =>
    execFileSync('sh', ['-c', `${stub}\n${script.replaceAll('/etc/troupe', dir).replace(/node \/app\/dist\/bin\/troupe\.js/, 'node troupe')}`], {
      env: { ...process.env, ROOT: dir },
      encoding: 'utf8',
    });
  mkdirSync(join(dir, 'ca'));
  mkdirSync(join(dir, 'secrets'));
  run();
  const secret = readFileSync(join(dir, 'secrets', 'carts-secret'), 'utf8');
  t.true(Buffer.byteLength(secret) >= 32, 'the carts secret has at least 32 bytes');
  t.is(statSync(join(dir, 'secrets', 'carts-secret')).mode & 0o777, 0o600);
  for (const f of ['ca.pem', 'node1.pem', 'node1-key.pem', 'node3-key.pem', 'events-summary-token']) t.true(existsSync(join(dir, 'secrets', f)), f);
  t.false(existsSync(join(dir, 'secrets', 'ca-key.pem')), 'the CA key stays in its own volume');
  run();
  t.is(readFileSync(join(dir, 'secrets', 'carts-secret'), 'utf8'), secret, 'the secret is kept on a second run');
  t.deepEqual(readFileSync(join(dir, 'log'), 'utf8').trim().split('\n'), ['create-ca', 'issue node1', 'issue node2', 'issue node3'], 'nothing is made twice');
});

test("the MySQL service runs the events brief's init, with its exact table", (t) => {
  const { doc } = loadCompose();
  const mysql = doc.services.mysql as Doc;
  t.is(mysql.image.split(':')[1]?.split('.')[0], '8');
  t.is(mysql.environment.MYSQL_DATABASE, 'eventdb');
  t.is(mysql.environment.MYSQL_ROOT_PASSWORD, 'testpass', ".env.example keeps the brief's root / testpass");
  const init = mysql.volumes.find((v: string) => v.includes('/docker-entrypoint-initdb.d/'));
  const file = join(ROOT, init.split(':')[0]);
  t.true(existsSync(file), `${file} exists`);
  const sql = readFileSync(file, 'utf8');
  for (const part of [
    'CREATE TABLE IF NOT EXISTS processed_events',
    "type ENUM('user_action', 'sensor_data', 'system_log') NOT NULL",
    'processed_data JSON',
    'INDEX idx_type_created (type, created_at)',
    'INDEX idx_user_created (user_id, created_at)',
  ])
    t.true(sql.includes(part), part);
  for (const node of ['node1', 'node2', 'node3']) {
    t.is(envOf(doc.services[node]).TROUPE_EVENTS_STORE, 'mysql');
    t.is(envOf(doc.services[node]).TROUPE_MYSQL, 'mysql://root:testpass@mysql:3306/eventdb');
  }
});
