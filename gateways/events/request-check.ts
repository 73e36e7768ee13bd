// A request body from JSON text to queue-ready events, or the exact refusal (status, error, fields).
// Pure and synchronous: the HTTP door runs it in the piscina pool so the main thread only does I/O.

import { acceptBatch, acceptEvent, EVENT_FORMAT, MAX_BATCH_EVENTS, type AcceptedEvent, type FieldProblem } from './event.js';

export type CheckedBody =
  | { ok: true; ids: string[]; count: number; /** AcceptedEvent[] as JSON, ready to queue. */ events: string; /** The EVENT_FORMAT they were checked under. */ format: number }
  | { ok: false; status: number; error: string; message: string; problems?: FieldProblem[]; /** Problems found past the listed ones. */ moreProblems?: number };

export interface CheckTask {
  text: string;
  batch: boolean;
  receivedAt: number;
}

function describe(problems: FieldProblem[], more: number): string {
  const listed = problems.map((p) => `${p.field} ${p.problem}`).join('; ');
  return more ? `${listed}; and ${more} more problem${more === 1 ? '' : 's'} not listed` : listed;
}

export function checkBody({ text, batch, receivedAt }: CheckTask): CheckedBody {
  if (text.length === 0) return { ok: false, status: 400, error: 'invalid_json', message: 'the body is empty; send a JSON object' };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    return { ok: false, status: 400, error: 'invalid_json', message: `the body is not valid JSON: ${(err as Error).message}` };
  }
  let events: AcceptedEvent[];
  if (batch) {
    const list = (body as { events?: unknown } | null)?.events;
    if (Array.isArray(list) && list.length > MAX_BATCH_EVENTS) {
      return { ok: false, status: 413, error: 'batch_too_large', message: `the batch holds ${list.length} events; at most ${MAX_BATCH_EVENTS} are accepted per request, split it` };
    }
    const r = acceptBatch(body, receivedAt);
    if (!r.events) return { ok: false, status: 400, error: 'invalid_events', message: describe(r.problems, r.more), problems: r.problems, moreProblems: r.more };
    events = r.events;
  } else {
    const r = acceptEvent(body, receivedAt);
    if (!r.event) return { ok: false, status: 400, error: 'invalid_event', message: describe(r.problems, r.more), problems: r.problems, moreProblems: r.more };
    events = [r.event];
  }
  return { ok: true, ids: events.map((e) => e.id), count: events.length, events: JSON.stringify(events), format: EVENT_FORMAT };
}
