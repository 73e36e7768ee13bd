// Renders any value (an actor's state, a reply) as bounded JSON for the inspector, without running
// the value's code: Maps, Sets, Dates, BigInts, typed arrays, class instances, cycles and functions
// become tagged objects ({"$type": "Map", ...}); depth, items per collection, string length and the
// whole text are capped, and what was cut is said where it was cut.

import { types } from 'node:util';

export interface RenderLimits {
  /** Budget of the JSON text, in characters; default 64 KiB. */
  maxBytes?: number;
  /** Nesting levels rendered; deeper values become {"$truncated": ...}; default 12. */
  maxDepth?: number;
  /** Items rendered per array, object, Map or Set; default 200. */
  maxItems?: number;
  /** Characters rendered per string; default 2000. */
  maxString?: number;
}

export const DEFAULT_RENDER_BYTES = 64 * 1024;
/** The most a caller may ask for: a reply of the inspector stays well under gRPC's 4 MiB default. */
export const MAX_RENDER_BYTES = 1024 * 1024;

export interface Rendered {
  json: string;
  /** True when anything was left out or shortened. */
  truncated: boolean;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

class Budget {
  left: number;
  truncated = false;
  constructor(bytes: number) {
    this.left = bytes;
  }
  /** Spends `n` characters; false (and nothing spent) when they do not fit. */
  spend(n: number): boolean {
    if (n > this.left) {
      this.truncated = true;
      this.left = 0;
      return false;
    }
    this.left -= n;
    return true;
  }
}

function describe(v: object): string {
  if (Array.isArray(v)) return `Array(${v.length})`;
  if (v instanceof Map) return `Map(${v.size})`;
  if (v instanceof Set) return `Set(${v.size})`;
  const name = className(v);
  return `${name ?? 'Object'} with ${Object.keys(v).length} keys`;
}

/** The constructor's name of a class instance; undefined for plain objects. */
function className(v: object): string | undefined {
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === null || proto === Object.prototype) return undefined;
  const ctor = Object.getOwnPropertyDescriptor(proto as object, 'constructor')?.value as unknown;
  return typeof ctor === 'function' && ctor.name ? ctor.name : 'Object';
}

export function renderValue(value: unknown, limits: RenderLimits = {}): Rendered {
  const maxBytes = Math.min(limits.maxBytes ?? DEFAULT_RENDER_BYTES, MAX_RENDER_BYTES);
  const maxDepth = limits.maxDepth ?? 12;
  const maxItems = limits.maxItems ?? 200;
  const maxString = limits.maxString ?? 2000;
  const budget = new Budget(maxBytes);
  const ancestors: object[] = [];

  const str = (s: string): string => {
    if (s.length <= maxString) return s;
    budget.truncated = true;
    return `${s.slice(0, maxString)}…(${s.length - maxString} more characters)`;
  };

  /** The cost of a leaf in the final text (approximate for escapes; the budget is a bound, not a count). */
  const leaf = (v: Json): Json | undefined => (budget.spend(JSON.stringify(v).length + 1) ? v : undefined);

  const tagged = (type: string, extra: Record<string, Json> = {}): Json | undefined => leaf({ $type: type, ...extra });

  const render = (v: unknown, depth: number): Json | undefined => {
    switch (typeof v) {
      case 'string':
        return leaf(str(v));
      case 'number':
        return Number.isFinite(v) ? leaf(v) : tagged('Number', { value: String(v) });
      case 'boolean':
        return leaf(v);
      case 'undefined':
        return tagged('undefined');
      case 'bigint':
        return tagged('BigInt', { value: v.toString() });
      case 'symbol':
        return tagged('Symbol', { description: v.description ?? '' });
      case 'function':
        return tagged('Function', { name: v.name });
    }
    if (v === null) return leaf(null);
    const o = v as object;
    if (types.isProxy(o)) return tagged('Proxy');
    if (o instanceof Date) return tagged('Date', { iso: Number.isNaN(o.getTime()) ? 'Invalid Date' : o.toISOString() });
    if (o instanceof RegExp) return tagged('RegExp', { source: String(o) });
    if (o instanceof Error) {
      const code = (o as { code?: unknown }).code;
      return tagged('Error', { name: str(o.name), message: str(o.message), ...(typeof code === 'string' ? { code } : {}) });
    }
    if (types.isAnyArrayBuffer(o)) return tagged(types.isSharedArrayBuffer(o) ? 'SharedArrayBuffer' : 'ArrayBuffer', { byteLength: o.byteLength });
    if (o instanceof DataView) return tagged('DataView', { byteLength: o.byteLength });
    if (types.isPromise(o) || types.isWeakMap(o) || types.isWeakSet(o) || o instanceof WeakRef) return tagged(className(o) ?? 'Object');
    if (ancestors.includes(o)) return tagged('Circular', { of: describe(o) });
    if (depth >= maxDepth) {
      budget.truncated = true;
      return leaf({ $truncated: describe(o) });
    }
    if (!budget.spend(2)) return undefined;
    ancestors.push(o);
    try {
      if (ArrayBuffer.isView(o)) {
        const arr = o as unknown as ArrayLike<number | bigint>;
        if (!budget.spend(32 + String(arr.length).length)) return undefined;
        const values = list(arr.length, (i) => (typeof arr[i] === 'bigint' ? String(arr[i]) : arr[i]!), depth);
        return { $type: className(o) ?? 'TypedArray', length: arr.length, values };
      }
      if (Array.isArray(o)) return list(o.length, (i) => o[i], depth);
      if (o instanceof Map) {
        const entries: [unknown, unknown][] = [];
        for (const e of o) {
          if (entries.length > maxItems) break;
          entries.push(e);
        }
        if (!budget.spend(32 + String(o.size).length)) return undefined;
        const rendered = list(o.size, (i) => entries[i], depth);
        return { $type: 'Map', size: o.size, entries: rendered };
      }
      if (o instanceof Set) {
        const values: unknown[] = [];
        for (const e of o) {
          if (values.length > maxItems) break;
          values.push(e);
        }
        if (!budget.spend(32 + String(o.size).length)) return undefined;
        return { $type: 'Set', size: o.size, values: list(o.size, (i) => values[i], depth) };
      }
      return object(o, depth);
    } finally {
      ancestors.pop();
    }
  };

  /** The first items of a list of `length`, and {"$more": n} for the rest (left out by count or budget). */
  const list = (length: number, at: (i: number) => unknown, depth: number): Json[] => {
    const out: Json[] = [];
    const shown = Math.min(length, maxItems);
    for (let i = 0; i < shown; i++) {
      const r = render(at(i), depth + 1);
      if (r === undefined) break;
      out.push(r);
    }
    if (out.length < length) {
      budget.truncated = true;
      out.push({ $more: length - out.length });
    }
    return out;
  };

  const object = (o: object, depth: number): Json => {
    const out: { [key: string]: Json } = {};
    const name = className(o);
    if (name !== undefined) {
      out.$class = name;
      budget.spend(name.length + 12);
    }
    const keys = Object.keys(o);
    let shown = 0;
    for (const key of keys) {
      if (shown >= maxItems) break;
      // Getters are not called: rendering must not run the state's code.
      const d = Object.getOwnPropertyDescriptor(o, key);
      const k = str(key);
      if (!budget.spend(k.length + 4)) break;
      const r = d && 'value' in d ? render(d.value, depth + 1) : tagged('Getter');
      if (r === undefined) break;
      out[k] = r;
      shown++;
    }
    if (shown < keys.length) {
      budget.truncated = true;
      out.$more = keys.length - shown;
    }
    return out;
  };

  const tree = render(value, 0) ?? { $truncated: typeof value === 'object' && value !== null ? describe(value) : typeof value };
  return { json: JSON.stringify(tree), truncated: budget.truncated };
}
