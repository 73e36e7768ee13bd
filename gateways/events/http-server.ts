// The events front door on node:http (node:https with a certificate): routes, body limits, content
// type, JSON parsing, validation answers, reading stored events back, the summary behind its
// token, and the stopping state in which every new request gets 503.

import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ActivitySummary } from '../../actors/user-activity.js';
import { activeTraceparent, inServerSpan, RETRYABLE_CODES, type Logger } from '../../runtime/index.js';
import { MAX_USER_ID_LENGTH, type FieldProblem } from './event.js';
import { encodeCursor, parseEventId, parseEventQuery } from './event-query.js';
import type { MetricsSnapshot } from './metrics.js';
import type { ProcessedEventStore } from './store.js';
import type { CheckedBody, CheckTask } from './request-check.js';
import type { QueuedBatch } from './queue.js';

export interface HealthReport {
  ok: boolean;
  /** Per dependency: "ok" or why it failed. */
  checks: Record<string, string>;
}

export interface EventsHttpDeps {
  maxBodyBytes: number;
  /** Most requests admitted and not yet queued (being checked or queued); beyond it, 503 at once. */
  maxPendingEnqueues: number;
  /** How long a client may take to send the request headers; then the connection is cut (default 10 s). */
  headersTimeoutMs?: number;
  /** How long a client may take to send a whole request; then it gets 408 (default 30 s). */
  requestTimeoutMs?: number;
  /** Open connections at most; one more is closed at once, unread (default 4096). */
  maxConnections?: number;
  /**
   * Throws (code OVERLOADED) when the queue holds too much to take more. Asked before a body is
   * parsed, so a refused request costs no validation work.
   */
  admit?(): Promise<void>;
  /** Parses and validates a body (checkBody, run in the pool by the pipeline). */
  check(task: CheckTask): Promise<CheckedBody>;
  /** Resolves once the batch is durably queued. */
  accept(batch: QueuedBatch): Promise<void>;
  metrics(): Promise<MetricsSnapshot>;
  health(): Promise<HealthReport>;
  summary(userId: string): Promise<ActivitySummary>;
  /**
   * GET /users/<id>/summary needs `authorization: Bearer <summaryToken>` (401 otherwise); without a
   * token the path is not served on this port (404 like any unknown path).
   */
  summaryToken?: string;
  /** Serve HTTPS with this PEM certificate and key; absent: plain HTTP. */
  tls?: { cert: Buffer; key: Buffer };
  /** The stored events, for GET /events/{id} and GET /events?...; absent: those are not served. */
  events?: Pick<ProcessedEventStore, 'get' | 'list'>;
  log: Logger;
  now?: () => number;
}

export interface EventsHttpServer {
  readonly port: number;
  /** From now on every new request gets 503; resolves when requests already in progress are answered. */
  refuseNew(): Promise<void>;
  close(): Promise<void>;
}

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    readonly problems?: FieldProblem[],
    readonly moreProblems = 0,
  ) {
    super(message);
  }
}

const JSON_TYPE = /^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A declared Content-Length over `limit`: 413 before a byte of the body is read. */
function refuseDeclaredSize(req: IncomingMessage, limit: number): void {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    throw new HttpProblem(413, 'body_too_large', `the body is ${declared} bytes; at most ${limit} bytes are accepted per request`);
  }
}

/** Reads the body up to `limit` bytes; past it, throws 413 (the connection is closed after the answer). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        reject(new HttpProblem(413, 'body_too_large', `the body is over ${limit} bytes; at most ${limit} bytes are accepted per request`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks, size));
      done = true;
    });
    req.on('error', (err) => {
      if (!done) reject(err);
      done = true;
    });
  });
}

const NOT_FOUND_HINT = 'try POST /events, POST /events/batch, GET /events, GET /events/<id>, GET /metrics, GET /health';

/** Whether `header` is `Bearer <token>`; the comparison takes the same time wherever they differ. */
function bearerMatches(header: string | undefined, tokenDigest: Buffer): boolean {
  const m = /^Bearer[ ]+(\S+)$/i.exec((header ?? '').trim());
  // Digests of equal length, so timingSafeEqual compares them whatever was sent.
  const given = createHash('sha256').update(m ? m[1]! : '').digest();
  return timingSafeEqual(given, tokenDigest) && m !== null;
}

export async function startEventsHttp(deps: EventsHttpDeps, host: string, port: number): Promise<EventsHttpServer> {
  const now = deps.now ?? Date.now;
  const summaryDigest = deps.summaryToken === undefined ? undefined : createHash('sha256').update(deps.summaryToken).digest();
  let refusing = false;
  let inProgress = 0;
  let pendingEnqueues = 0;
  let idle: (() => void) | undefined;

  function overloaded(err: unknown): HttpProblem | undefined {
    if (err instanceof HttpProblem) return err;
    if ((err as { code?: unknown }).code === 'OVERLOADED') return new HttpProblem(503, 'overloaded', (err as Error).message);
    return undefined;
  }

  /** Backpressure before any parsing: too many requests admitted and not yet queued, or the queue full. */
  async function admit(): Promise<void> {
    if (pendingEnqueues >= deps.maxPendingEnqueues) {
      throw new HttpProblem(503, 'overloaded', `${pendingEnqueues} requests are already waiting for the event queue; retry shortly`);
    }
    try {
      await deps.admit?.();
    } catch (err) {
      throw overloaded(err) ?? new HttpProblem(503, 'queue_unavailable', `the queue cannot be read: ${(err as Error).message}; retry later`);
    }
  }

  async function enqueue(batch: QueuedBatch): Promise<void> {
    try {
      await deps.accept(batch);
    } catch (err) {
      const problem = overloaded(err);
      if (problem) throw problem;
      deps.log.warn({ err: (err as Error).message }, 'event batch could not be queued');
      throw new HttpProblem(503, 'queue_unavailable', `the events were not accepted, the event queue failed: ${(err as Error).message}; retry later`);
    }
  }

  /** `traceparent`: the request's span, read before the awaits (tracing.ts keeps it only that long). */
  async function postEvents(req: IncomingMessage, res: ServerResponse, batch: boolean, traceparent: string | undefined): Promise<void> {
    const receivedAt = now();
    const contentType = req.headers['content-type'];
    if (!contentType || !JSON_TYPE.test(contentType)) {
      throw new HttpProblem(415, 'unsupported_media_type', `Content-Type must be application/json (UTF-8); got ${contentType ? JSON.stringify(contentType) : 'none'}`);
    }
    refuseDeclaredSize(req, deps.maxBodyBytes);
    // Capacity before the body: a refused request is answered without buffering what it sends.
    await admit();
    // From admission until queued (or refused), the request counts against maxPendingEnqueues.
    pendingEnqueues++;
    let checked: CheckedBody;
    try {
      const text = (await readBody(req, deps.maxBodyBytes)).toString('utf8');
      checked = await deps.check({ text, batch, receivedAt });
      if (!checked.ok) throw new HttpProblem(checked.status, checked.error, checked.message, checked.problems, checked.moreProblems);
      await enqueue({ receivedAt, count: checked.count, events: checked.events, checked: checked.format, ...(traceparent ? { traceparent } : {}) });
    } finally {
      pendingEnqueues--;
    }
    send(res, 202, batch ? { accepted: checked.count, ids: checked.ids } : { accepted: 1, id: checked.ids[0], ids: checked.ids });
  }

  /** A store read; its failure is the store's, so 503 and retry, not a 500. */
  async function read<T>(what: string, p: () => Promise<T>): Promise<T> {
    try {
      return await p();
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, `reading ${what} failed`);
      throw new HttpProblem(503, 'store_unavailable', `the events store did not answer while reading ${what}: ${(err as Error).message}; retry later`);
    }
  }

  async function listEvents(res: ServerResponse, events: NonNullable<EventsHttpDeps['events']>, search: string): Promise<void> {
    const { query, problems } = parseEventQuery(search);
    if (!query) throw new HttpProblem(400, 'invalid_query', `the query is not valid: ${problems.map((p) => `${p.field} ${p.problem}`).join('; ')}`, problems);
    // One row more than the page says whether there is a next one.
    const rows = await read('a page of events', () => events.list({ ...query, limit: query.limit + 1 }));
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    send(res, 200, { events: page, next_cursor: rows.length > query.limit && last ? encodeCursor(last) : null });
  }

  async function getEvent(res: ServerResponse, events: NonNullable<EventsHttpDeps['events']>, segment: string): Promise<void> {
    let text: string;
    try {
      text = decodeURIComponent(segment);
    } catch {
      throw new HttpProblem(400, 'invalid_event_id', 'the event id in the path is not valid percent-encoding');
    }
    const id = parseEventId(text);
    if (!id) throw new HttpProblem(400, 'invalid_event_id', `an event id is a UUID such as 3f2a9c1e-0b6d-4c8e-9a51-2f0e7d3b6a10; got ${JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text)}`);
    const row = await read(`event ${id}`, () => events.get(id));
    if (!row) throw new HttpProblem(404, 'event_not_found', `no stored event has id ${id} (an accepted event is stored once the queue has processed it)`);
    send(res, 200, row);
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const search = q < 0 ? '' : url.slice(q + 1);
    const method = req.method ?? 'GET';
    const allow = (methods: string) => {
      if (!methods.split(', ').includes(method)) {
        throw new HttpProblem(405, 'method_not_allowed', `${method} ${path} is not served; use ${methods}`);
      }
    };
    if (path === '/metrics' && method === 'GET') return send(res, 200, await deps.metrics());
    if (refusing) {
      return send(res, 503, { error: 'shutting_down', message: 'this node is shutting down and accepts no new requests; send them to another node or retry' }, { connection: 'close', 'retry-after': '1' });
    }
    const events = deps.events;
    if (path === '/events' && method === 'GET' && events) return listEvents(res, events, search);
    if (events && path.startsWith('/events/') && path !== '/events/batch') {
      allow('GET');
      return getEvent(res, events, path.slice('/events/'.length));
    }
    if (path === '/events' || path === '/events/batch') {
      allow(path === '/events' && events ? 'GET, POST' : 'POST');
      const traceparent = typeof req.headers.traceparent === 'string' ? req.headers.traceparent : undefined;
      return inServerSpan(`POST ${path}`, traceparent, { 'http.request.method': 'POST', 'url.path': path }, () => postEvents(req, res, path === '/events/batch', activeTraceparent()));
    }
    if (path === '/metrics') return allow('GET');
    if (path === '/health') {
      allow('GET');
      const h = await deps.health();
      const failing = Object.entries(h.checks).filter(([, v]) => v !== 'ok').map(([k]) => k);
      return send(res, h.ok ? 200 : 503, h.ok ? { status: 'ok', checks: h.checks } : { status: 'unavailable', failing, checks: h.checks });
    }
    const m = summaryDigest && /^\/users\/([^/]+)\/summary$/.exec(path);
    if (m) {
      allow('GET');
      if (!bearerMatches(req.headers.authorization, summaryDigest)) {
        throw new HttpProblem(401, 'unauthorized', 'GET /users/<id>/summary needs `authorization: Bearer <token>` with the token of --events-summary-token-file');
      }
      let userId: string;
      try {
        userId = decodeURIComponent(m[1]!);
      } catch {
        throw new HttpProblem(400, 'invalid_user_id', 'the user id in the path is not valid percent-encoding');
      }
      if (userId.length === 0 || userId.length > MAX_USER_ID_LENGTH) {
        throw new HttpProblem(400, 'invalid_user_id', `a user id has 1 to ${MAX_USER_ID_LENGTH} characters`);
      }
      return send(res, 200, await deps.summary(userId));
    }
    throw new HttpProblem(404, 'not_found', `nothing at ${method} ${path}; ${NOT_FOUND_HINT}`);
  }

  const headersTimeout = deps.headersTimeoutMs ?? 10_000;
  const requestTimeout = Math.max(deps.requestTimeoutMs ?? 30_000, headersTimeout);
  const timeouts = {
    keepAliveTimeout: 65_000,
    headersTimeout,
    requestTimeout,
    // Node checks both timeouts on this tick (default 30 s), which would stretch a short limit.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    inProgress++;
    res.on('close', () => {
      inProgress--;
      if (inProgress === 0) idle?.();
    });
    route(req, res).catch((err: unknown) => {
      if (err instanceof HttpProblem) {
        const headers: Record<string, string> = err.status === 503 ? { 'retry-after': '1' } : {};
        // 413 and 503 leave the body unread: close rather than read it to reuse the connection.
        const unread = err.status === 413 || (err.status === 503 && !req.complete);
        if (unread) headers.connection = 'close';
        if (err.status === 405) headers.allow = err.message.replace(/^.*use /, '');
        if (err.status === 401) headers['www-authenticate'] = 'Bearer';
        const more = err.moreProblems ? { more_problems: err.moreProblems } : {};
        send(res, err.status, err.problems ? { error: err.error, message: err.message, problems: err.problems, ...more } : { error: err.error, message: err.message }, headers);
        if (unread) res.on('finish', () => req.destroy());
        return;
      }
      const e = err as { code?: string; message?: string };
      if (e.code === 'OVERLOADED') return send(res, 503, { error: 'overloaded', message: e.message }, { 'retry-after': '1' });
      // A user actor whose partition is moving or served by nobody for a moment: retry, not a 500.
      if (e.code !== undefined && RETRYABLE_CODES.has(e.code)) return send(res, 503, { error: 'actors_unavailable', code: e.code, message: e.message }, { 'retry-after': '1' });
      deps.log.error({ err: e.message, path: req.url }, 'events request failed');
      send(res, 500, { error: 'internal', message: e.message ?? String(err) });
    });
  };
  // HTTPS keeps every limit of HTTP; and a TLS handshake gets no longer than the headers would.
  const server: Server = deps.tls
    ? createHttpsServer({ ...timeouts, cert: deps.tls.cert, key: deps.tls.key, handshakeTimeout: headersTimeout }, handle)
    : createServer(timeouts, handle);
  // Past the cap node closes a new connection at once, before reading from it.
  server.maxConnections = deps.maxConnections ?? 4096;
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Over HTTPS, a failed or timed-out handshake (not an HTTP error): no answer can be written, so cut it.
    if (deps.tls && !/^(HPE_|ERR_HTTP_)/.test(err.code ?? '')) {
      socket.destroy();
      return;
    }
    // A client too slow with its headers or body (headersTimeout, requestTimeout) is told so.
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    port: (server.address() as AddressInfo).port,
    async refuseNew() {
      refusing = true;
      if (inProgress > 0) await new Promise<void>((resolve) => (idle = resolve));
    },
    async close() {
      refusing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 1000).unref();
      await closed;
    },
  };
}
