// Fetches the other members' NodeReports from their ops ports. A member advertises only its
// cluster port, so its ops port is asked once of its inspector (Describe) and remembered; when
// that inspector is off, the member is tried at this node's own ops port (the usual deployment:
// every node on 9464).

import { InspectorClient, type InspectorTls } from '../inspector/client.js';
import type { NodeReport } from './node-report.js';

/** A report, or why there is none. */
export type PeerAnswer = { ok: true; report: NodeReport } | { ok: false; error: string };

/** The most a report may be (1,024 partitions and a few types are about 20 KiB). */
const MAX_REPORT_BYTES = 4 * 1024 * 1024;

/** What the sampler needs of the other members (PeerReports over HTTP; tests give their own). */
export interface PeerSource {
  report(nodeId: string, address: string): Promise<PeerAnswer>;
  /** Where the member's ops port is, once known (`http://host:port`). */
  opsUrl(nodeId: string, address: string): Promise<string | undefined>;
  /** The member left: forget what was learnt about it. */
  forget(nodeId: string): void;
}

export class PeerReports implements PeerSource {
  readonly #ownOpsPort: () => number | undefined;
  readonly #timeoutMs: number;
  readonly #tls: InspectorTls | undefined;
  /** Member id → base URL of its ops port. */
  readonly #opsUrls = new Map<string, string>();

  /** `tls`: the node's own certificate files, which a peer's inspector asks for in a cluster with mutual TLS. */
  constructor(options: { ownOpsPort: () => number | undefined; timeoutMs?: number; tls?: InspectorTls }) {
    this.#ownOpsPort = options.ownOpsPort;
    this.#tls = options.tls;
    this.#timeoutMs = options.timeoutMs ?? 1500;
  }

  /** The ops URL of a member (`http://host:port`), found once per member id. */
  async opsUrl(nodeId: string, address: string): Promise<string | undefined> {
    const known = this.#opsUrls.get(nodeId);
    if (known) return known;
    const host = hostOf(address);
    if (host === undefined) return undefined;
    let port: number | undefined;
    const client = new InspectorClient(address, { timeoutMs: this.#timeoutMs, tls: this.#tls });
    try {
      port = (await client.describe()).ports.find((p) => p.name === 'ops')?.port;
    } catch {
      port = undefined;
    } finally {
      client.close();
    }
    port ??= this.#ownOpsPort();
    if (port === undefined || port === 0) return undefined;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.#opsUrls.set(nodeId, url);
    return url;
  }

  forget(nodeId: string): void {
    this.#opsUrls.delete(nodeId);
  }

  async report(nodeId: string, address: string): Promise<PeerAnswer> {
    const base = await this.opsUrl(nodeId, address);
    if (!base) return { ok: false, error: `no ops port known for ${nodeId} (${address}): its inspector did not say, and this node's ops port was no guess` };
    const answer = await this.getJson<NodeReport>(`${base}/dashboard/api/node`);
    if (answer.ok && answer.value.nodeId !== nodeId) {
      this.forget(nodeId);
      return { ok: false, error: `${base} answers as ${answer.value.nodeId}, not ${nodeId}` };
    }
    return answer.ok ? { ok: true, report: answer.value } : answer;
  }

  /** A JSON GET to a peer's dashboard API, bounded in time and size. */
  async getJson<T>(url: string): Promise<{ ok: true; value: T } | { ok: false; error: string; status?: number }> {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.#timeoutMs) });
      const text = await res.text();
      if (text.length > MAX_REPORT_BYTES) return { ok: false, error: `${url} sent ${text.length} bytes; at most ${MAX_REPORT_BYTES} are read` };
      if (!res.ok) return { ok: false, status: res.status, error: `${url}: HTTP ${res.status}: ${text.slice(0, 300).trim()}` };
      return { ok: true, value: JSON.parse(text) as T };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      const why = e.name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : (e.cause?.code ?? e.message);
      return { ok: false, error: `${url}: ${why}` };
    }
  }
}

function hostOf(address: string): string | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  return m?.[1];
}
