// The embedded event-batch queue: a SQLite table in the node's data directory (WAL, so a committed
// batch survives a process crash). One node owns its data directory, so "in flight" is kept in memory:
// after a restart every batch still in the table is delivered again.

import Database from 'better-sqlite3';
import { join } from 'node:path';
import { makePrivateFile } from '../../runtime/index.js';
import { backoffDelay, type BatchProcessor, type EventBatchQueue, type QueuedBatch, type RetryPolicy } from './queue.js';

interface BatchRow {
  seq: number;
  events: string;
  received_at: number;
  event_count: number;
  deliveries: number;
  traceparent: string | null;
  hand_off: number;
}

export interface SqliteQueueOptions {
  dataDir: string;
  retry: RetryPolicy;
  /** File name inside dataDir; tests give each queue its own. */
  fileName?: string;
  /** How often to look for batches whose retry is due. */
  pollMs?: number;
  now?: () => number;
}

export class SqliteEventQueue implements EventBatchQueue {
  readonly kind = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #retry: RetryPolicy;
  readonly #pollMs: number;
  readonly #now: () => number;
  readonly #inFlight = new Map<number, Promise<void>>();
  #processor?: BatchProcessor;
  #concurrency = 1;
  #closing = false;
  #timer?: NodeJS.Timeout;
  #pumpScheduled = false;
  readonly #insert: Database.Statement;
  readonly #ready: Database.Statement;
  readonly #claim: Database.Statement;
  readonly #done: Database.Statement;
  readonly #retryLater: Database.Statement;
  readonly #fail: Database.Statement;
  readonly #depth: Database.Statement;

  constructor(options: SqliteQueueOptions) {
    this.#retry = options.retry;
    this.#pollMs = options.pollMs ?? 100;
    this.#now = options.now ?? Date.now;
    this.#db = new Database(makePrivateFile(join(options.dataDir, options.fileName ?? 'events-queue.sqlite')));
    this.#db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode: a commit survives a process crash (SIGKILL); only a power cut can lose
    // the last commits. The 202 is a promise against process crashes, as with Redis without fsync.
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(`CREATE TABLE IF NOT EXISTS event_batches (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      events TEXT NOT NULL,
      received_at INTEGER NOT NULL,
      event_count INTEGER NOT NULL,
      deliveries INTEGER NOT NULL DEFAULT 0,
      due_at INTEGER NOT NULL DEFAULT 0,
      state TEXT NOT NULL DEFAULT 'ready',
      last_error TEXT
    )`);
    this.#db.exec(`CREATE INDEX IF NOT EXISTS event_batches_ready ON event_batches (state, due_at)`);
    // Added after the first release: a queue file written before it gains the column here.
    const columns = this.#db.prepare(`PRAGMA table_info(event_batches)`).all() as { name: string }[];
    if (!columns.some((c) => c.name === 'traceparent')) this.#db.exec(`ALTER TABLE event_batches ADD COLUMN traceparent TEXT`);
    if (!columns.some((c) => c.name === 'hand_off')) this.#db.exec(`ALTER TABLE event_batches ADD COLUMN hand_off INTEGER NOT NULL DEFAULT 0`);
    this.#insert = this.#db.prepare(`INSERT INTO event_batches (events, received_at, event_count, traceparent, hand_off) VALUES (?, ?, ?, ?, ?)`);
    this.#ready = this.#db.prepare(`SELECT seq, events, received_at, event_count, deliveries, traceparent, hand_off FROM event_batches WHERE state = 'ready' AND due_at <= ? ORDER BY seq LIMIT ?`);
    this.#claim = this.#db.prepare(`UPDATE event_batches SET deliveries = deliveries + 1 WHERE seq = ?`);
    this.#done = this.#db.prepare(`DELETE FROM event_batches WHERE seq = ?`);
    this.#retryLater = this.#db.prepare(`UPDATE event_batches SET due_at = ?, last_error = ? WHERE seq = ?`);
    this.#fail = this.#db.prepare(`UPDATE event_batches SET state = 'failed', last_error = ? WHERE seq = ?`);
    this.#depth = this.#db.prepare(`SELECT COALESCE(SUM(event_count), 0) AS n FROM event_batches WHERE state = 'ready'`);
  }

  async enqueue(batch: QueuedBatch): Promise<void> {
    if (this.#closing) throw new Error('the event queue is closing; the batch was not accepted');
    this.#insert.run(batch.events, batch.receivedAt, batch.count, batch.traceparent ?? null, batch.handOff ? 1 : 0);
    this.#schedulePump();
  }

  start(processor: BatchProcessor, concurrency: number): void {
    this.#processor = processor;
    this.#concurrency = Math.max(1, concurrency);
    this.#timer = setInterval(() => this.#pump(), this.#pollMs);
    this.#timer.unref();
    this.#schedulePump();
  }

  #schedulePump(): void {
    if (this.#pumpScheduled || !this.#processor) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#closing || !this.#processor) return;
    const room = this.#concurrency - this.#inFlight.size;
    if (room <= 0) return;
    // Rows in flight are still 'ready' in the table; ask for enough to skip past them.
    const rows = this.#ready.all(this.#now(), room + this.#inFlight.size) as BatchRow[];
    let taken = 0;
    for (const row of rows) {
      if (taken >= room) break;
      if (this.#inFlight.has(row.seq)) continue;
      taken++;
      // The delivery is counted on disk before it runs, so a batch that crashes the process every
      // time still reaches its last attempt instead of looping forever.
      this.#claim.run(row.seq);
      const attempt = row.deliveries + 1;
      const batch: QueuedBatch = { receivedAt: row.received_at, count: row.event_count, events: row.events };
      if (row.traceparent) batch.traceparent = row.traceparent;
      if (row.hand_off) batch.handOff = true;
      const run = this.#deliver(row.seq, batch, attempt).finally(() => {
        this.#inFlight.delete(row.seq);
        this.#schedulePump();
      });
      this.#inFlight.set(row.seq, run);
    }
  }

  async #deliver(seq: number, batch: QueuedBatch, attempt: number): Promise<void> {
    const final = attempt >= this.#retry.attempts;
    try {
      await this.#processor!([batch], { batchId: String(seq), attempt, redelivered: attempt > 1, final });
      this.#done.run(seq);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (this.#db.open) {
        if (final) this.#fail.run(message, seq);
        else this.#retryLater.run(this.#now() + backoffDelay(this.#retry, attempt), message, seq);
      }
    }
  }

  async depth(): Promise<number> {
    return (this.#depth.get() as { n: number }).n;
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async drained(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#inFlight.size === 0 && (await this.depth()) === 0) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.#timer) clearInterval(this.#timer);
    await Promise.allSettled([...this.#inFlight.values()]);
    this.#db.close();
  }

  /** Batches kept after their last attempt failed (for tools and tests). */
  failedBatches(): { seq: number; events: number; error: string }[] {
    return (this.#db.prepare(`SELECT seq, event_count AS events, last_error AS error FROM event_batches WHERE state = 'failed'`).all() as never[]);
  }
}
