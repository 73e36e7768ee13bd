// The door of the chaos counters, loaded only by the nodes `troupe chaos` starts (`troupe chaos-node`):
// POST /counters/<key>/add with body {"seq": N} asks `chaos-counter/<key>` to apply increment N and
// answers 200 with its reply; GET /counters/<key> answers its state. Bodies are capped, keys checked.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Gateway, GatewayHost, RunningGateway, SettingSpec } from '../../runtime/index.js';

const settings: readonly SettingSpec[] = [
  { name: 'chaos-counter-port', kind: 'port', default: 0, description: 'HTTP port of the chaos counters (troupe chaos only; 0: any free port)' },
];

const KEY = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_BODY = 256;
const ASK_TIMEOUT_MS = 5000;

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > MAX_BODY) {
        resolve(undefined);
        req.destroy();
      }
    });
    req.on('end', () => resolve(text));
    req.on('error', () => resolve(undefined));
  });
}

export const chaosCounterGateway: Gateway = {
  name: 'chaos-counter',
  actorModules: [new URL('./counter-actor.js', import.meta.url).href],
  settings,
  async start(host: GatewayHost): Promise<RunningGateway> {
    const server = createServer(async (req, res) => {
      const m = /^\/counters\/([^/]+)(\/add)?$/.exec(req.url ?? '');
      if (!m || !KEY.test(m[1]!)) return send(res, 404, { error: 'not_found', message: 'use POST /counters/<key>/add or GET /counters/<key>; a key is 1-64 letters, digits, _ or -' });
      const ref = host.system.ref('chaos-counter', m[1]!);
      try {
        if (m[2] && req.method === 'POST') {
          const body = await readBody(req);
          let seq: unknown;
          try {
            seq = body === undefined ? undefined : (JSON.parse(body) as { seq?: unknown }).seq;
          } catch {
            seq = undefined;
          }
          if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return send(res, 400, { error: 'bad_request', message: `body must be {"seq": N} with N a whole number >= 0, at most ${MAX_BODY} bytes` });
          return send(res, 200, await ref.ask('add', seq, { timeoutMs: ASK_TIMEOUT_MS }));
        }
        if (!m[2] && req.method === 'GET') return send(res, 200, await ref.ask('read', undefined, { timeoutMs: ASK_TIMEOUT_MS }));
        return send(res, 405, { error: 'method_not_allowed' });
      } catch (err) {
        // Not applied or not known: the load counts anything but 200 and 400 as "may have been applied".
        if (!res.headersSent) send(res, 503, { error: (err as Error).name, message: (err as Error).message });
      }
    });
    server.requestTimeout = 10_000;
    server.headersTimeout = 5000;
    server.maxHeadersCount = 50;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(host.settings['chaos-counter-port'] as number, host.host, () => resolve());
    });
    return {
      ports: { http: (server.address() as { port: number }).port },
      async stop() {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  },
};
