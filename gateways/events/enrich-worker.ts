// The piscina worker: the CPU work of the pipeline, off the main thread. `checkBody` checks a
// request body at the door; the default export enriches queued batches for the store.

import { enrich, type EnrichResult, type EnrichTask } from './enrichment.js';
export { checkBody } from './request-check.js';

export default function enrichBatches(task: EnrichTask): EnrichResult {
  return enrich(task);
}
