// A renderer for the subset of Go templates (and Helm's functions) that ops/helm/troupe uses, so
// the chart's manifests can be checked offline (helm is not installable here). It refuses what it
// does not know rather than guess: a template using more fails the tests and must extend this.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'out'; expr: string }
  | { kind: 'if'; branches: { cond: string | undefined; body: Node[] }[] }
  | { kind: 'range'; vars: string[]; expr: string; body: Node[] }
  | { kind: 'with'; expr: string; body: Node[] };

interface Scope {
  dot: unknown;
  root: unknown;
  vars: Record<string, unknown>;
}

function tokenize(src: string): ({ text: string } | { action: string })[] {
  const out: ({ text: string } | { action: string })[] = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    if (open < 0) {
      out.push({ text: src.slice(i) });
      break;
    }
    let text = src.slice(i, open);
    const close = src.indexOf('}}', open);
    if (close < 0) throw new Error(`unclosed {{ at ${open}`);
    let action = src.slice(open + 2, close);
    let next = close + 2;
    if (action.startsWith('-')) {
      text = text.replace(/\s+$/, '');
      action = action.slice(1);
    }
    if (action.endsWith('-')) {
      action = action.slice(0, -1);
      while (next < src.length && /\s/.test(src[next]!)) next++;
    }
    out.push({ text });
    out.push({ action: action.trim() });
    i = next;
  }
  return out;
}

function build(tokens: ({ text: string } | { action: string })[], defines: Map<string, Node[]>): Node[] {
  let pos = 0;
  const block = (stopAt: string[]): { nodes: Node[]; stop: string } => {
    const nodes: Node[] = [];
    while (pos < tokens.length) {
      const tok = tokens[pos++]!;
      if ('text' in tok) {
        if (tok.text) nodes.push({ kind: 'text', text: tok.text });
        continue;
      }
      const a = tok.action;
      if (a.startsWith('/*')) continue;
      const word = a.split(/\s+/)[0]!;
      if (stopAt.includes(word)) return { nodes, stop: a };
      if (word === 'if') {
        const branches: { cond: string | undefined; body: Node[] }[] = [];
        let cond: string | undefined = a.slice(2).trim();
        for (;;) {
          const { nodes: body, stop } = block(['else', 'end']);
          branches.push({ cond, body });
          if (stop === 'end') break;
          cond = stop.startsWith('else if') ? stop.slice(7).trim() : undefined;
        }
        nodes.push({ kind: 'if', branches });
      } else if (word === 'range') {
        const m = /^range\s+(?:(\$\w+)\s*(?:,\s*(\$\w+))?\s*:=\s*)?(.+)$/.exec(a);
        if (!m) throw new Error(`range not understood: ${a}`);
        const { nodes: body } = block(['end']);
        nodes.push({ kind: 'range', vars: [m[1], m[2]].filter(Boolean) as string[], expr: m[3]!, body });
      } else if (word === 'with') {
        const { nodes: body } = block(['end']);
        nodes.push({ kind: 'with', expr: a.slice(4).trim(), body });
      } else if (word === 'define') {
        const name = JSON.parse(a.slice(6).trim()) as string;
        const { nodes: body } = block(['end']);
        defines.set(name, body);
      } else if (['else', 'end', 'template', 'block'].includes(word)) {
        throw new Error(`unexpected {{ ${a} }}`);
      } else nodes.push({ kind: 'out', expr: a });
    }
    if (stopAt.length) throw new Error(`missing {{ end }} (wanted ${stopAt.join('/')})`);
    return { nodes, stop: '' };
  };
  return block([]).nodes;
}

function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v as object).length > 0;
  return true;
}

function field(base: unknown, path: string[], where: string): unknown {
  let v = base;
  for (const key of path) {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object') throw new Error(`${where}: cannot take .${key} of ${JSON.stringify(v)}`);
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function splitTerms(expr: string): string[] {
  const terms: string[] = [];
  let i = 0;
  while (i < expr.length) {
    if (/\s/.test(expr[i]!)) {
      i++;
      continue;
    }
    if (expr[i] === '"') {
      let j = i + 1;
      while (j < expr.length && expr[j] !== '"') j += expr[j] === '\\' ? 2 : 1;
      terms.push(expr.slice(i, j + 1));
      i = j + 1;
    } else if (expr[i] === '(') {
      let depth = 0;
      let j = i;
      for (; j < expr.length; j++) {
        if (expr[j] === '(') depth++;
        if (expr[j] === ')' && --depth === 0) break;
      }
      terms.push(expr.slice(i, j + 1));
      i = j + 1;
    } else {
      let j = i;
      while (j < expr.length && !/\s/.test(expr[j]!)) j++;
      terms.push(expr.slice(i, j));
      i = j;
    }
  }
  return terms;
}

function splitPipe(expr: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (c === '"' && expr[i - 1] !== '\\') quoted = !quoted;
    if (quoted) continue;
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (c === '|' && depth === 0) {
      parts.push(expr.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(expr.slice(start));
  return parts.map((p) => p.trim());
}

export class ChartRenderer {
  private readonly defines = new Map<string, Node[]>();
  private readonly templates = new Map<string, Node[]>();
  /** Every .Values path a template reads, for the "exists in values.yaml" check. */
  readonly valuesPaths = new Set<string>();

  constructor(chartDir: string) {
    const dir = join(chartDir, 'templates');
    for (const file of readdirSync(dir).sort()) {
      const src = readFileSync(join(dir, file), 'utf8');
      for (const m of src.matchAll(/\$?\.Values((?:\.[A-Za-z0-9_]+)+)/g)) this.valuesPaths.add(m[1]!.slice(1));
      const nodes = build(tokenize(src), this.defines);
      if (!file.startsWith('_')) this.templates.set(file, nodes);
    }
  }

  /** The chart's manifests for these values, as helm template would print them (one string per template). */
  render(context: { Values: unknown; Release: unknown; Chart: unknown }): Map<string, string> {
    const out = new Map<string, string>();
    for (const [file, nodes] of this.templates) out.set(file, this.run(nodes, { dot: context, root: context, vars: { $: context } }, file));
    return out;
  }

  private run(nodes: Node[], scope: Scope, where: string): string {
    let s = '';
    for (const n of nodes) {
      if (n.kind === 'text') s += n.text;
      else if (n.kind === 'out') {
        const v = this.pipeline(n.expr, scope, where);
        s += v === undefined || v === null ? '' : String(v);
      } else if (n.kind === 'if') {
        for (const b of n.branches) {
          if (b.cond === undefined || truthy(this.pipeline(b.cond, scope, where))) {
            s += this.run(b.body, scope, where);
            break;
          }
        }
      } else if (n.kind === 'with') {
        const v = this.pipeline(n.expr, scope, where);
        if (truthy(v)) s += this.run(n.body, { ...scope, dot: v }, where);
      } else {
        const v = this.pipeline(n.expr, scope, where);
        const entries: [unknown, unknown][] = Array.isArray(v)
          ? v.map((x, i) => [i, x])
          : v && typeof v === 'object'
            ? Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]])
            : [];
        for (const [k, x] of entries) {
          const vars = { ...scope.vars };
          if (n.vars.length === 1) vars[n.vars[0]!] = x;
          if (n.vars.length === 2) {
            vars[n.vars[0]!] = k;
            vars[n.vars[1]!] = x;
          }
          s += this.run(n.body, { ...scope, dot: x, vars }, where);
        }
      }
    }
    return s;
  }

  private pipeline(expr: string, scope: Scope, where: string): unknown {
    let piped: unknown[] = [];
    for (const part of splitPipe(expr)) {
      const terms = splitTerms(part);
      const head = terms[0]!;
      const args = terms.slice(1).map((t) => this.term(t, scope, where));
      if (/^[a-z][A-Za-z0-9]*$/.test(head) && !['true', 'false', 'nil'].includes(head)) piped = [this.call(head, [...args, ...piped], scope, where)];
      else {
        if (args.length || piped.length) throw new Error(`${where}: "${part}" is not a function call`);
        piped = [this.term(head, scope, where)];
      }
    }
    return piped[0];
  }

  private term(t: string, scope: Scope, where: string): unknown {
    if (t.startsWith('(')) return this.pipeline(t.slice(1, -1), scope, where);
    if (t.startsWith('"')) return JSON.parse(t);
    if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
    if (t === 'true' || t === 'false') return t === 'true';
    if (t === 'nil') return null;
    if (t === '.') return scope.dot;
    if (t.startsWith('.')) return field(scope.dot, t.slice(1).split('.'), where);
    if (t.startsWith('$')) {
      const [name, ...path] = t.split('.');
      if (!(name! in scope.vars)) throw new Error(`${where}: unknown variable ${name}`);
      return field(scope.vars[name!], path, where);
    }
    throw new Error(`${where}: term "${t}" not understood`);
  }

  private call(name: string, a: unknown[], scope: Scope, where: string): unknown {
    const str = (v: unknown): string => (v === undefined || v === null ? '' : String(v));
    switch (name) {
      case 'include': {
        const body = this.defines.get(a[0] as string);
        if (!body) throw new Error(`${where}: include of undefined template ${a[0]}`);
        return this.run(body, { dot: a[1], root: scope.root, vars: { $: a[1] } }, `${where} > ${a[0]}`);
      }
      case 'default':
        return truthy(a[1]) ? a[1] : a[0];
      case 'quote':
        return JSON.stringify(str(a[0]));
      case 'toYaml':
        return a[0] === undefined || a[0] === null ? '' : stringify(a[0], { lineWidth: 0 }).replace(/\n$/, '');
      case 'nindent':
        return '\n' + str(a[1]).split('\n').map((l) => (l ? ' '.repeat(a[0] as number) + l : l)).join('\n');
      case 'indent':
        return str(a[1]).split('\n').map((l) => (l ? ' '.repeat(a[0] as number) + l : l)).join('\n');
      case 'trunc':
        return str(a[1]).slice(0, a[0] as number);
      case 'trimSuffix':
        return str(a[1]).endsWith(a[0] as string) ? str(a[1]).slice(0, -(a[0] as string).length) : str(a[1]);
      case 'printf': {
        let i = 1;
        return (a[0] as string).replace(/%[sdv]/g, () => str(a[i++]));
      }
      case 'join':
        return (a[1] as unknown[]).map(str).join(a[0] as string);
      case 'has':
        return Array.isArray(a[1]) && a[1].includes(a[0]);
      case 'b64enc':
        return Buffer.from(str(a[0])).toString('base64');
      case 'sha256sum':
        return createHash('sha256').update(str(a[0])).digest('hex');
      case 'not':
        return !truthy(a[0]);
      case 'or':
        return a.find(truthy) ?? a[a.length - 1];
      case 'and':
        return a.every(truthy) ? a[a.length - 1] : a.find((x) => !truthy(x));
      case 'eq':
        return a[0] === a[1];
      case 'fail':
        throw new Error(`${where}: ${str(a[0])}`);
      case 'required':
        if (!truthy(a[1])) throw new Error(`${where}: ${a[0]}`);
        return a[1];
      default:
        throw new Error(`${where}: function ${name} is not supported by the offline renderer`);
    }
  }
}

/** values.yaml with `overrides` merged over it, maps deeply and everything else replaced, as helm -f does. */
export function mergeValues(base: unknown, overrides: unknown): unknown {
  if (overrides === undefined) return base;
  if (base && overrides && typeof base === 'object' && typeof overrides === 'object' && !Array.isArray(base) && !Array.isArray(overrides)) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(overrides)) out[k] = mergeValues(out[k], v);
    return out;
  }
  return overrides;
}

export function loadYaml(path: string): unknown {
  return parse(readFileSync(path, 'utf8'));
}
