// Tracing: OpenTelemetry spans that follow a request from a gateway through every actor hop, on
// every thread and node it crosses, exported over OTLP/HTTP. Off unless an endpoint is set; when
// off, the hot path pays one boolean test per send and one property test per turn.
//
// The SDK (providers, exporter, sampler) is set up by tracing-sdk.ts; this file needs only the API.
//
// How a trace crosses a hop: a send made inside a sampled span carries that span's W3C
// `traceparent` with the message, wrapped around its payload (`{ '~troupe.trace': tp, m: payload }`),
// so it rides the batch arrays between threads and the frames between nodes unchanged. The turn
// that takes the message unwraps it and runs inside a span whose parent is that traceparent. Only
// sampled contexts are carried: an unsampled request costs nothing past its gateway.
//
// Spans: the gateway's own (SERVER, from `inServerSpan`, continuing a caller's `traceparent`); an
// ask (CLIENT, from the send to the reply, so it covers the queues, the hops and any commit the
// reply waited for); a turn (SERVER for an ask, CONSUMER for a tell: the handler's run).

import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Attributes, type Context, type Link, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';

/** True while this thread records spans. Read on every send: an imported live binding. */
export let tracingOn = false;
let tracer: Tracer | undefined;
/** Share of requests without a sampled parent that start a trace. */
let newTraceRatio = 0;

/** True while this thread records spans (for callers outside the runtime; inside, read `tracingOn`). */
export function isTracing(): boolean {
  return tracingOn;
}

/**
 * For tracing-sdk.ts: the tracer this thread records with (undefined stops), and the share of new
 * traces. The decision to start a trace is made here, before any span exists, so that a request
 * not sampled costs one random number: no ids, no span object, no context.
 */
export function useTracer(t: Tracer | undefined, sampleRatio = 0): void {
  tracer = t;
  tracingOn = t !== undefined;
  newTraceRatio = sampleRatio;
}

// ---- gateways -----------------------------------------------------------------------------------
//
// The active span is kept for the synchronous part of `fn` only (the context manager is a stack):
// on Node 20, AsyncLocalStorage would tax every promise of the thread, traced or not (measured by
// `npm run bench -- tracing`). Sends made before `fn`'s first await carry the span; work that
// sends later keeps the context with `currentTrace()` and sends inside `inTrace(kept, ...)`.

/**
 * Runs `fn` inside a SERVER span named `name` (a gateway's call). A valid `traceparent` from the
 * caller (gRPC metadata, an HTTP header) decides: sampled, the span continues that trace; not
 * sampled, no span. Without one, a new trace starts with the configured ratio. Without tracing,
 * or not sampled, it only runs `fn`.
 */
export function inServerSpan<T>(name: string, traceparent: string | undefined, attributes: Attributes, fn: () => T): T {
  if (!tracingOn) return fn();
  const caller = traceparent === undefined ? undefined : spanContextOf(traceparent);
  if (caller !== undefined) {
    if ((caller.traceFlags & TraceFlags.SAMPLED) === 0) return fn();
    return inSpan(name, SpanKind.SERVER, trace.setSpanContext(ROOT_CONTEXT, caller), attributes, fn);
  }
  if (!(Math.random() < newTraceRatio)) return fn();
  return inSpan(name, SpanKind.SERVER, ROOT_CONTEXT, attributes, fn);
}

/**
 * Runs `fn` inside a CONSUMER span for work taken from a queue on behalf of one or more requests:
 * the first sampled `traceparents` is its parent (so that request's trace goes on through the
 * actors), and the others are links. With none sampled it is a new trace, started with the ratio.
 */
export function inConsumerSpan<T>(name: string, traceparents: readonly (string | undefined)[], attributes: Attributes, fn: () => T): T {
  if (!tracingOn) return fn();
  let parent: SpanContext | undefined;
  const links: Link[] = [];
  for (const tp of traceparents) {
    const sc = tp === undefined ? undefined : spanContextOf(tp);
    if (sc === undefined) continue;
    if (parent === undefined && (sc.traceFlags & TraceFlags.SAMPLED) !== 0) parent = sc;
    else links.push({ context: sc });
  }
  if (parent === undefined && !(Math.random() < newTraceRatio)) return fn();
  return inSpan(name, SpanKind.CONSUMER, parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent), attributes, fn, links);
}

/** Runs `fn` inside an INTERNAL span child of the active one (a step of a gateway's work), if any. */
export function inChildSpan<T>(name: string, attributes: Attributes, fn: () => T): T {
  if (!tracingOn || trace.getSpan(context.active()) === undefined) return fn();
  return inSpan(name, SpanKind.INTERNAL, context.active(), attributes, fn);
}

/**
 * The active trace context, kept by work that sends later on a request's behalf (a batch that
 * gathers many requests); undefined without tracing.
 */
export function currentTrace(): Context | undefined {
  return tracingOn ? context.active() : undefined;
}

/** Runs `fn` in a context kept by `currentTrace` (or as it is, for undefined). */
export function inTrace<T>(ctx: Context | undefined, fn: () => T): T {
  return ctx === undefined || !tracingOn ? fn() : context.with(ctx, fn);
}

/** The active span's traceparent when it is sampled, to carry across a queue (BullMQ jobs). */
export function activeTraceparent(): string | undefined {
  if (!tracingOn) return undefined;
  const sc = trace.getSpanContext(context.active());
  return sc !== undefined && (sc.traceFlags & TraceFlags.SAMPLED) !== 0 ? formatTraceparent(sc) : undefined;
}

function inSpan<T>(name: string, kind: SpanKind, parent: Context, attributes: Attributes, fn: () => T, links?: Link[]): T {
  const span = tracer!.startSpan(name, { kind, attributes, links }, parent);
  const ctx = trace.setSpan(parent, span);
  let result: T;
  try {
    result = context.with(ctx, fn);
  } catch (err) {
    endWithError(span, err);
    throw err;
  }
  const thenable = result as unknown as PromiseLike<unknown> | null;
  if (thenable !== null && typeof thenable === 'object' && typeof thenable.then === 'function') {
    thenable.then(
      () => span.end(),
      (err: unknown) => endWithError(span, err),
    );
  } else span.end();
  return result;
}

// ---- the runtime's hops ----------------------------------------------------------------------------

const TRACE_KEY = '~troupe.trace';

/** A payload carrying the traceparent of the span that sent it. */
interface TracedPayload {
  '~troupe.trace': string;
  m: unknown;
}

/** The traceparent a message carries, or undefined; `untraced` gives its own payload back. */
export function traceOf(payload: unknown): string | undefined {
  if (payload === null || typeof payload !== 'object') return undefined;
  const tp: unknown = (payload as Partial<TracedPayload>)[TRACE_KEY];
  return typeof tp === 'string' ? tp : undefined;
}

export function untraced(payload: unknown): unknown {
  return (payload as TracedPayload).m;
}

function traced(payload: unknown, sc: SpanContext): TracedPayload {
  return { [TRACE_KEY]: formatTraceparent(sc), m: payload } as TracedPayload;
}

function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & 0xff).toString(16)}`;
}

/** W3C Trace Context: version-traceid-parentid-flags (later versions may append fields). */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** The span context a traceparent names, or undefined when it is not a valid one. */
function spanContextOf(traceparent: string): SpanContext | undefined {
  const m = TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (m === null || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined) || m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return undefined;
  return { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) & TraceFlags.SAMPLED, isRemote: true };
}

/** The sampled span a send from the main thread is made in (the active context), if any. */
export function sendingSpan(): Span | undefined {
  const span = trace.getSpan(context.active());
  return span !== undefined && (span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0 ? span : undefined;
}

/** A tell made inside `span`: its payload, carrying the span. */
export function tracedTell(payload: unknown, span: Span): unknown {
  return traced(payload, span.spanContext());
}

/**
 * An ask made inside `span`: opens the ask's CLIENT span (ended when `reply` settles) and returns
 * the payload carrying it.
 */
export function tracedAsk(target: string, partition: number, handler: string, payload: unknown, span: Span, reply: Promise<unknown>): unknown {
  const ask = tracer!.startSpan(
    `ask ${target.slice(0, target.indexOf('/'))}.${handler}`,
    { kind: SpanKind.CLIENT, attributes: { 'troupe.actor': target, 'troupe.partition': partition } },
    trace.setSpan(ROOT_CONTEXT, span),
  );
  reply.then(
    () => ask.end(),
    (err: unknown) => endWithError(ask, err),
  );
  return traced(payload, ask.spanContext());
}

/** The span of a turn that took a traced message (SERVER for an ask, CONSUMER for a tell). */
export function turnSpan(actor: string, handler: string, isAsk: boolean, traceparent: string, attributes: Attributes): Span {
  const sent = spanContextOf(traceparent);
  return tracer!.startSpan(
    `${actor.slice(0, actor.indexOf('/'))}.${handler}`,
    { kind: isAsk ? SpanKind.SERVER : SpanKind.CONSUMER, attributes: { 'troupe.actor': actor, ...attributes } },
    sent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, sent),
  );
}

export function endWithError(span: Span, err: unknown): void {
  const message = err instanceof Error ? err.message : typeof err === 'object' && err !== null && 'message' in err ? String((err as { message: unknown }).message) : String(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  if (err instanceof Error) span.recordException(err);
  else span.setAttribute('error.message', message);
  span.end();
}
