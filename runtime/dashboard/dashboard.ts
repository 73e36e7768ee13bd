// GET /dashboard on the ops port: the page (plain ES modules and CSS from runtime/dashboard/public,
// uPlot from node_modules) and its JSON API under /dashboard/api/. One function, `handle`, answers
// every dashboard request, and access is decided in one place (`authorize`) before anything else.

import type { InspectorTls } from '../inspector/client.js';
import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { partitionOf } from '../partition.js';
import { projectRoot } from '../paths.js';
import { ClusterWatch } from './cluster-watch.js';
import { nodeReport, type DashboardSource } from './node-report.js';
import { PeerReports } from './peer-reports.js';

export interface DashboardOptions {
  /**
   * Decides whether a request may see the dashboard: undefined lets it through, a string refuses
   * it (403, with that reason). The ops port's access control plugs in here.
   */
  authorize?: (req: IncomingMessage) => string | undefined;
  /** Sampling and turn timing stop this long after the last request; default 30 s. */
  idleStopMs?: number;
  intervalMs?: number;
  /** Calls to a peer's ops port; default 1500 ms. */
  peerTimeoutMs?: number;
  /** The node's own certificate files, for asking a peer's inspector (mutual TLS) where its ops port is. */
  peerTls?: InspectorTls;
}

export interface Dashboard {
  /** Answers the request if its path is /dashboard or under it; false otherwise (not answered). */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** True while sampling (someone watched within idleStopMs). */
  readonly watching: boolean;
  close(): void;
}

const PUBLIC_DIR = join(projectRoot(), 'runtime', 'dashboard', 'public');
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };

/** Actors listed per node and call: at most this many (the inspector's own bound). */
const MAX_ACTORS = 1000;
const MAX_STATE_BYTES = 64 * 1024;
const MAX_ID_LENGTH = 1024;

class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The files served, read once: nothing outside this list can be asked for by path. */
function loadFiles(): Map<string, { type: string; body: Buffer }> {
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(PUBLIC_DIR)) {
    const ext = name.slice(name.lastIndexOf('.'));
    if (TYPES[ext]) files.set(`/dashboard/static/${name}`, { type: TYPES[ext]!, body: readFileSync(join(PUBLIC_DIR, name)) });
  }
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json'));
  files.set('/dashboard/vendor/uPlot.esm.js', { type: TYPES['.js']!, body: readFileSync(join(uplot, 'dist', 'uPlot.esm.js')) });
  files.set('/dashboard/vendor/uPlot.min.css', { type: TYPES['.css']!, body: readFileSync(join(uplot, 'dist', 'uPlot.min.css')) });
  return files;
}

export function createDashboard(source: DashboardSource, options: DashboardOptions = {}): Dashboard {
  const files = loadFiles();
  const index = readFileSync(join(PUBLIC_DIR, 'index.html'));
  const node = source.node;
  const idleStopMs = options.idleStopMs ?? 30_000;
  const peers = new PeerReports({ ownOpsPort: () => source.ports().ops, timeoutMs: options.peerTimeoutMs, tls: options.peerTls });
  const watch = new ClusterWatch({
    self: node.nodeId,
    local: () => nodeReport(source),
    peers,
    intervalMs: options.intervalMs,
    idleStopMs,
  });

  // Turn timing is on while any dashboard request came lately: this node's own page, or a peer's
  // dashboard fetching this node's report.
  let timingOff: NodeJS.Timeout | undefined;
  const timeTurns = (): void => {
    if (timingOff === undefined) void node.setTurnTiming(true).catch(() => {});
    clearTimeout(timingOff);
    timingOff = setTimeout(() => {
      timingOff = undefined;
      void node.setTurnTiming(false).catch(() => {});
    }, idleStopMs);
    timingOff.unref();
  };

  const needInspector = (): void => {
    if (source.inspector === 'off') throw new HttpRefusal(403, `node ${node.nodeId} runs with --inspector off: its actors and their states are not shown`);
  };
  const limitOf = (url: URL): number => {
    const raw = url.searchParams.get('limit');
    const n = raw === null ? 200 : Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new HttpRefusal(400, `limit must be a whole number from 1 to ${MAX_ACTORS}, got "${raw}"`);
    return Math.min(n, MAX_ACTORS);
  };
  const knownType = (type: string): string => {
    if (!node.inspected.actorTypes.some((t) => t.name === type)) {
      throw new HttpRefusal(404, `no actor type "${type.slice(0, 80)}" on node ${node.nodeId} (types: ${node.inspected.actorTypes.map((t) => t.name).join(', ') || 'none'})`);
    }
    return type;
  };
  const typeOf = (url: URL): string | undefined => {
    const type = url.searchParams.get('type') ?? '';
    return type === '' ? undefined : knownType(type);
  };
  const idOf = (url: URL): string => {
    const id = url.searchParams.get('id') ?? '';
    const slash = id.indexOf('/');
    if (slash <= 0 || slash === id.length - 1 || id.length > MAX_ID_LENGTH) throw new HttpRefusal(400, `id must be an actor id "type/key" of at most ${MAX_ID_LENGTH} characters, got "${id.slice(0, 80)}"`);
    knownType(id.slice(0, slash));
    return id;
  };

  const localActors = async (url: URL) => {
    needInspector();
    const type = typeOf(url);
    const limit = limitOf(url);
    const ids = await node.listActors({ type, limit });
    return { nodeId: node.nodeId, ids, limit, more: ids.length >= limit };
  };
  const localState = async (url: URL) => {
    needInspector();
    const id = idOf(url);
    const partition = partitionOf(id, node.partitions);
    const type = node.inspected.actorTypes.find((t) => t.name === id.slice(0, id.indexOf('/')))!;
    const found = await node.inspected.inspectState(id, MAX_STATE_BYTES);
    return { nodeId: node.nodeId, id, partition, shard: partition % node.shardCount, servedHere: node.servesPartition(partition), storage: type.storage, ...found };
  };

  /** Every node's live actors of a type, filtered by key, up to `limit` per node. */
  const clusterActors = async (url: URL) => {
    const type = typeOf(url);
    const filter = (url.searchParams.get('key') ?? '').slice(0, 200).toLowerCase();
    const limit = limitOf(url);
    await watch.touch();
    const { view } = watch.latest();
    const query = `type=${encodeURIComponent(type ?? '')}&limit=${limit}`;
    const answers = await Promise.all(
      (view?.nodes ?? []).map(async (n) => {
        if (n.nodeId === node.nodeId) {
          try {
            return await localActors(url);
          } catch (err) {
            return { nodeId: n.nodeId, error: (err as Error).message };
          }
        }
        if (!n.opsUrl) return { nodeId: n.nodeId, error: n.detail ?? 'not reachable' };
        const a = await peers.getJson<{ ids: string[]; more: boolean }>(`${n.opsUrl}/dashboard/api/node/actors?${query}`);
        return a.ok ? { nodeId: n.nodeId, ...a.value } : { nodeId: n.nodeId, error: a.error };
      }),
    );
    const actors: { id: string; key: string; node: string }[] = [];
    const problems: string[] = [];
    let more = false;
    for (const a of answers) {
      if ('error' in a && a.error) {
        problems.push(`${a.nodeId}: ${a.error}`);
        continue;
      }
      const ok = a as { nodeId: string; ids: string[]; more: boolean };
      more ||= ok.more;
      for (const id of ok.ids) {
        const key = id.slice(id.indexOf('/') + 1);
        if (filter === '' || key.toLowerCase().includes(filter)) actors.push({ id, key, node: ok.nodeId });
      }
    }
    return { type: type ?? '', filter, limitPerNode: limit, more, actors, problems };
  };

  /** One actor's state, from the node serving its partition (by the latest sample). */
  const clusterState = async (url: URL) => {
    const id = idOf(url);
    await watch.touch();
    const { view } = watch.latest();
    const p = partitionOf(id, node.partitions);
    const server = view && view.owner[p]! >= 0 ? view.nodes[view.owner[p]!]! : undefined;
    if (!server) throw new HttpRefusal(503, `partition ${p} of ${id} is served by no node right now (moving, or its owner died and its lease has not lapsed); try again in a few seconds`);
    if (server.nodeId === node.nodeId) return localState(url);
    if (!server.opsUrl) throw new HttpRefusal(502, `${server.nodeId} serves ${id} but does not answer: ${server.detail ?? ''}`);
    const a = await peers.getJson(`${server.opsUrl}/dashboard/api/node/state?id=${encodeURIComponent(id)}`);
    if (!a.ok) throw new HttpRefusal(a.status ?? 502, a.error);
    return a.value;
  };

  const api: Record<string, (url: URL) => Promise<unknown>> = {
    '/dashboard/api/cluster': () => watch.touch(),
    '/dashboard/api/series': async (url) => {
      await watch.touch();
      const since = Number(url.searchParams.get('since') ?? 0);
      return watch.series(Number.isFinite(since) ? since : 0);
    },
    '/dashboard/api/node': () => nodeReport(source),
    '/dashboard/api/node/actors': localActors,
    '/dashboard/api/node/state': localState,
    '/dashboard/api/actors': clusterActors,
    '/dashboard/api/state': clusterState,
  };

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, cache = false) => {
    res.writeHead(status, {
      'content-type': type,
      'cache-control': cache ? 'max-age=300' : 'no-store',
      'x-content-type-options': 'nosniff',
      // The page runs only its own scripts and talks only to this origin.
      'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    });
    res.end(body);
  };

  return {
    get watching() {
      return watch.active;
    },
    handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://ops');
      const path = url.pathname;
      if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
      const refused = options.authorize?.(req);
      if (refused !== undefined) {
        send(res, 403, 'text/plain; charset=utf-8', `dashboard: ${refused}\n`);
        return true;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'text/plain; charset=utf-8', 'the dashboard is read-only: only GET\n');
        return true;
      }
      if (path === '/dashboard' || path === '/dashboard/') {
        send(res, 200, TYPES['.html']!, index);
        return true;
      }
      const file = files.get(path);
      if (file) {
        send(res, 200, file.type, file.body, path.startsWith('/dashboard/vendor/'));
        return true;
      }
      const route = api[path];
      if (!route) {
        send(res, 404, 'text/plain; charset=utf-8', `not found: ${path.slice(0, 200)}; the dashboard is at /dashboard\n`);
        return true;
      }
      timeTurns();
      route(url).then(
        (body) => send(res, 200, 'application/json', JSON.stringify(body)),
        (err: unknown) => {
          const status = err instanceof HttpRefusal ? err.status : 500;
          send(res, status, 'application/json', JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
        },
      );
      return true;
    },
    close() {
      watch.stop();
      if (timingOff !== undefined) {
        clearTimeout(timingOff);
        timingOff = undefined;
        void node.setTurnTiming(false).catch(() => {});
      }
    },
  };
}
