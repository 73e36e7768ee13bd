// Sets up OpenTelemetry in one thread (main or shard): a tracer provider with a batching OTLP/HTTP
// exporter and a synchronous (stack) context manager; tracing.ts decides which requests start a
// trace (the ratio) and carries traceparents itself. Each thread has its own provider and
// exporter; the spans of one trace meet again in the collector.

import { context, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, StackContextManager, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import { useTracer } from './tracing.js';

export interface TracingOptions {
  /** OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. */
  endpoint: string;
  /** Share of new traces (a request with no sampled parent) that are recorded, 0 to 1. */
  sampleRatio: number;
  /** `service.name` of the spans; default `troupe`. */
  serviceName?: string;
  /** More resource attributes: the node id, the thread. */
  attributes?: Record<string, string | number>;
  /** How often finished spans are sent; default 1000 ms. */
  exportDelayMs?: number;
}

let provider: TracerProvider | undefined;

/**
 * Starts recording spans in this thread. Returns false, and changes nothing, when this thread
 * already records (a test's own provider, or a node started twice in one process).
 */
export function startTracing(o: TracingOptions, exporter?: SpanExporter): boolean {
  if (provider !== undefined) return false;
  provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': o.serviceName ?? 'troupe', ...o.attributes }),
    // Spans are made only for sampled requests (tracing.ts decides), so the SDK records them all.
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: exporter ?? new OTLPTraceExporter({ url: o.endpoint }),
        scheduledDelayMillis: o.exportDelayMs ?? 1000,
        maxQueueSize: 8192,
        maxExportBatchSize: 1024,
      }),
    ],
  });
  context.setGlobalContextManager(new StackContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  useTracer(provider.getTracer('troupe'), o.sampleRatio);
  return true;
}

/** Sends what is recorded and stops recording in this thread. */
export async function stopTracing(): Promise<void> {
  const p = provider;
  if (p === undefined) return;
  useTracer(undefined);
  provider = undefined;
  try {
    await p.shutdown();
  } finally {
    trace.disable();
    context.disable();
  }
}

/** Sends the spans finished so far. */
export async function flushTracing(): Promise<void> {
  await provider?.forceFlush();
}
