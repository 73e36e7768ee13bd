// The documentation as a reader who clones the repository meets it: every relative link leads to a
// file in the repository, nothing points outside it, and the headings that answer the services'
// briefs are there.

import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/docs.test.js -> the repository root.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

// Built output, dependencies, data and tool folders are not documentation of this repository.
const SKIP_DIRS = new Set(['node_modules', 'dist', 'data']);

function markdownFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || SKIP_DIRS.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...markdownFiles(path));
    else if (entry.isFile() && entry.name.endsWith('.md')) found.push(path);
  }
  return found;
}

/** The text a reader sees as prose: fenced code blocks and inline code removed. */
function proseOf(markdown: string): string {
  const lines: string[] = [];
  let fence: string | undefined;
  for (const line of markdown.split('\n')) {
    const m = /^\s*(```+|~~~+)/.exec(line);
    if (m) {
      if (fence === undefined) fence = m[1]![0];
      else if (m[1]![0] === fence) fence = undefined;
      lines.push('');
      continue;
    }
    lines.push(fence === undefined ? line.replace(/(`+)[^`]*?\1/g, '') : '');
  }
  return lines.join('\n');
}

/** Link targets of a document: inline links and images `[text](target)`, and `[label]: target` definitions. */
function linkTargets(markdown: string): { target: string; line: number }[] {
  const targets: { target: string; line: number }[] = [];
  proseOf(markdown)
    .split('\n')
    .forEach((text, i) => {
      for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push({ target: m[1]!, line: i + 1 });
      const def = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(text);
      if (def) targets.push({ target: def[1]!, line: i + 1 });
    });
  return targets;
}

/** Where a relative link of `file` leads, or undefined for links that leave the repository by design (URLs, same-page anchors). */
function linkedPath(file: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) return undefined;
  const path = decodeURIComponent(target.replace(/[#?].*$/, ''));
  return path.startsWith('/') ? join(ROOT, path) : resolve(dirname(file), path);
}

/** GitHub's anchor for a heading: lowercase, punctuation dropped, each space a hyphen. */
function slugOf(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors a document offers: one per heading (repeats numbered -1, -2, as GitHub does). */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | undefined;
  for (const line of markdown.split('\n')) {
    const f = /^\s*(```+|~~~+)/.exec(line);
    if (f) {
      if (fence === undefined) fence = f[1]![0];
      else if (f[1]![0] === fence) fence = undefined;
      continue;
    }
    if (fence !== undefined) continue;
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const slug = slugOf(h[1]!);
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}

// Anchors into sections that another branch writes: checked once the section exists, so this
// test holds on either side of the merge. Remove an entry once its section has landed.
const PENDING_ANCHORS = new Set<string>([]);

const docs = markdownFiles(ROOT);
const rel = (path: string) => relative(ROOT, path).split(sep).join('/');

test('the link reader finds inline links and definitions, not code', (t) => {
  const md = ['see [a](docs/a.md) and ![img](b.png "title")', '`[not](c.md)`', '```', '[nor](d.md)', '```', '[e]: ./e.md', '[web](https://example.com)'].join('\n');
  t.deepEqual(
    linkTargets(md).map((l) => l.target),
    ['docs/a.md', 'b.png', './e.md', 'https://example.com'],
  );
});

test('there is documentation to check', (t) => {
  for (const must of ['README.md', 'docs/contracts.md', 'gateways/who/README.md', 'gateways/carts/README.md', 'gateways/presence/README.md', 'gateways/events/README.md']) {
    t.true(docs.map(rel).includes(must), `${must} is missing`);
  }
});

test('no document refers to a file outside the repository (../shared, shared/specs)', (t) => {
  const offenders: string[] = [];
  for (const file of docs) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (line.includes('../shared') || line.includes('shared/specs')) offenders.push(`${rel(file)}:${i + 1}: ${line.trim()}`);
      });
  }
  t.deepEqual(offenders, [], 'these lines point outside the repository; point them at docs/contracts.md instead');
});

test('every relative link in every document leads to a file in the repository', (t) => {
  const broken: string[] = [];
  for (const file of docs) {
    for (const { target, line } of linkTargets(readFileSync(file, 'utf8'))) {
      const path = linkedPath(file, target);
      if (path === undefined) continue;
      if (relative(ROOT, path).startsWith('..')) broken.push(`${rel(file)}:${line}: ${target} leaves the repository`);
      else if (!existsSync(path)) broken.push(`${rel(file)}:${line}: ${target} does not exist`);
    }
  }
  t.deepEqual(broken, []);
});

test('the anchor reader names headings as GitHub does', (t) => {
  const md = ['# Troupe', '## 4. WHO / WHERE / WHY', '### Metrics (GET /metrics), exactly', '## Tests', '## Tests', '```', '# not a heading', '```'].join('\n');
  t.deepEqual([...anchorsOf(md)], ['troupe', '4-who--where--why', 'metrics-get-metrics-exactly', 'tests', 'tests-1']);
});

test('every link to a section of a document names a heading that is there', (t) => {
  const broken: string[] = [];
  const anchorsByFile = new Map<string, Set<string>>();
  const anchors = (path: string) => {
    let found = anchorsByFile.get(path);
    if (!found) anchorsByFile.set(path, (found = anchorsOf(readFileSync(path, 'utf8'))));
    return found;
  };
  for (const file of docs) {
    for (const { target, line } of linkTargets(readFileSync(file, 'utf8'))) {
      const hash = target.indexOf('#');
      if (hash < 0 || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      const path = hash === 0 ? file : linkedPath(file, target);
      if (path === undefined || !path.endsWith('.md') || !existsSync(path)) continue;
      const anchor = decodeURIComponent(target.slice(hash + 1));
      if (anchors(path).has(anchor)) continue;
      if (PENDING_ANCHORS.has(`${rel(path)}#${anchor}`)) continue;
      broken.push(`${rel(file)}:${line}: ${target}: no heading "${anchor}" in ${rel(path)}`);
    }
  }
  t.deepEqual(broken, []);
});

test('the top README and every service README link to the contracts', (t) => {
  const contracts = join(ROOT, 'docs', 'contracts.md');
  for (const doc of ['README.md', ...['presence', 'dating', 'carts', 'who', 'events'].map((g) => `gateways/${g}/README.md`)]) {
    const file = join(ROOT, doc);
    const links = linkTargets(readFileSync(file, 'utf8')).map(({ target }) => linkedPath(file, target));
    t.true(links.includes(contracts), `${doc} does not link to docs/contracts.md`);
  }
});

// The headings that answer each service's brief (issue #25). Matched at the start of a heading
// of level 2 or 3, case-insensitively, so a heading may say more.
const REQUIRED_HEADINGS: Record<string, string[]> = {
  'README.md': ['Status', 'Security'],
  'SECURITY.md': ['Reporting a problem', 'Threat model', 'Attackers by position', 'Deploying safely', 'Limits on every port', 'What is not protected'],
  'docs/contracts.md': ['Ports', '1. Presence', '2. Match stream', '3. Carts and items', '4. WHO / WHERE / WHY', '5. Event pipeline'],
  'gateways/who/README.md': [
    'Production readiness',
    'Decisions made along the way',
    'Distributed design',
    'At 99.9999%',
    'For the product team',
    'In a microservice ecosystem',
  ],
  'gateways/carts/README.md': ['Domain model', 'Authentication and permissions', 'Not built yet'],
  'gateways/presence/README.md': ['Components'],
  'gateways/events/README.md': ['Overview and architecture', 'API', 'Decisions and trade-offs'],
};

test('the documents have the headings that answer their briefs', (t) => {
  const missing: string[] = [];
  for (const [doc, headings] of Object.entries(REQUIRED_HEADINGS)) {
    const present = proseOf(readFileSync(join(ROOT, doc), 'utf8'))
      .split('\n')
      .filter((l) => /^#{2,3} /.test(l))
      .map((l) => l.replace(/^#+ /, '').toLowerCase());
    for (const h of headings) if (!present.some((p) => p.startsWith(h.toLowerCase()))) missing.push(`${doc}: "${h}"`);
  }
  t.deepEqual(missing, []);
});

/** The shell commands of a document's fenced blocks, continuation lines joined. */
function shellCommands(markdown: string): string[] {
  const commands: string[] = [];
  let fence: string | undefined;
  let pending = '';
  for (const line of markdown.split('\n')) {
    const f = /^\s*(```+|~~~+)/.exec(line);
    if (f) {
      fence = fence === undefined ? f[1]![0] : undefined;
      continue;
    }
    if (fence === undefined) continue;
    const text = line.replace(/\s+#.*$/, '');
    if (text.endsWith('\\')) pending += text.slice(0, -1) + ' ';
    else {
      commands.push(pending + text);
      pending = '';
    }
  }
  return commands;
}

test('every cluster node the README and SECURITY.md start says how its cluster port is secured', (t) => {
  const joins = /\btroupe(\.js)? node\b.*--redis(-sentinels)?\b/;
  for (const doc of ['README.md', 'SECURITY.md']) {
    const nodes = shellCommands(readFileSync(join(ROOT, doc), 'utf8')).filter((c) => joins.test(c));
    t.true(nodes.length > 0, `${doc} starts a cluster node`);
    for (const c of nodes) {
      const tls = ['--tls-ca', '--tls-cert', '--tls-key'].every((f) => c.includes(f));
      t.true(tls || c.includes('--insecure-cluster'), `${doc}: gives --tls-ca/--tls-cert/--tls-key or --insecure-cluster: ${c.trim()}`);
      t.true(c.includes('--carts-secret-file') || c.includes('--gateways'), `${doc}: a cluster node gets the carts secret from a file: ${c.trim()}`);
      t.false(/--carts-secret\s/.test(c), `${doc}: no secret as a flag (it shows in ps): ${c.trim()}`);
    }
  }
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  t.regex(readme, /troupe\.js certs create-ca --out certs/, 'the README makes the CA before the nodes');
  t.regex(readme, /certs issue --ca certs --name n\$i/, 'and a certificate per node, named as the node');
  t.regex(readFileSync(join(ROOT, 'SECURITY.md'), 'utf8'), /security@troupe\.invalid[\s\S]*must replace it/, 'the placeholder contact says it must be replaced');
});
