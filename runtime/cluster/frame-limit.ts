// The largest frame a node takes on its cluster port: the default and why, the `--cluster-max-frame`
// setting, and the check of a value given. gRPC refuses a larger message by its length prefix.

import type { SettingSpec } from '../settings.js';

/**
 * 16 MiB. What the largest real frames are, with the defaults:
 * - a batch: the transport flushes every 4096 messages (FLUSH_AT); 4096 tells of the benchmark's
 *   small payloads are about 100 KiB, and a batch that would pass the limit is split by the sender
 *   (frame-codec.ts, `encodeBatchParts`), so the limit bounds one message, not a batch;
 * - one message: the largest the gateways make is an events `recordEvents` ask, which carries at
 *   most one request body's events (`--events-max-body-bytes`, 1 MiB by default; enriched, under
 *   2 MiB). 16 MiB leaves room for bodies raised to about 8 MiB and for actors' own messages;
 * - hand-offs: split into frames of at most the limit (one actor's state per row at least).
 * Against it: gRPC holds a whole frame before the node reads it, and its decoded values take a
 * few times its bytes; 64 MiB (the former limit) let one peer make a node hold hundreds of MB.
 */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1_048_576;

/** Below this, the inspector (1 MiB requests, on the same port) and modest actor states would not fit. */
export const MIN_MAX_FRAME_BYTES = 2 * 1_048_576;
/** gRPC's own ceiling is 2^31 - 1; past 1 GiB a frame is a mistake, not a batch. */
export const MAX_MAX_FRAME_BYTES = 1024 * 1_048_576;

/** `troupe node --cluster-max-frame BYTES` (bin/node-settings.ts lists it). */
export const clusterMaxFrameSetting: SettingSpec = {
  name: 'cluster-max-frame',
  kind: 'int',
  min: MIN_MAX_FRAME_BYTES,
  max: MAX_MAX_FRAME_BYTES,
  default: DEFAULT_MAX_FRAME_BYTES,
  description:
    'largest frame, in bytes, taken on the cluster port (larger ones are refused before they are read; senders split batches and hand-offs to fit); give every node the same value, and raise it if one message (e.g. an events body) can be larger',
};

/** The limit to use: the default, or a value checked like the setting (a RangeError says what to give). */
export function frameLimit(maxFrameBytes: number | undefined): number {
  if (maxFrameBytes === undefined) return DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < MIN_MAX_FRAME_BYTES || maxFrameBytes > MAX_MAX_FRAME_BYTES) {
    throw new RangeError(`the cluster frame limit (maxFrameBytes, --cluster-max-frame) is ${maxFrameBytes}; give a whole number of bytes from ${MIN_MAX_FRAME_BYTES} to ${MAX_MAX_FRAME_BYTES}`);
  }
  return maxFrameBytes;
}

/** gRPC's receive limit for frames of `maxFrameBytes`: the frame plus its protobuf field header (tag and length). */
export function grpcMessageLimit(maxFrameBytes: number): number {
  return maxFrameBytes + 16;
}
