// The event ids a user actor applied lately, packed into one string so that its durable snapshot
// stays a few hundred bytes: each entry is a 72-bit digest of the id and the second it was received.
// A user's whole state is written on every change, so a list of full ids (up to 512 × 36 chars)
// made every write, and the WAL behind it, many times larger than the aggregates themselves.

import { hash } from 'node:crypto';

/** Characters of an entry's id digest: 12 base64url characters, 72 bits of SHA-1. */
const DIGEST_CHARS = 12;
/** Characters of an entry's receipt time: whole seconds since the epoch, base 36, zero-padded. */
const SECOND_CHARS = 7;
const ENTRY_CHARS = DIGEST_CHARS + SECOND_CHARS;

/**
 * The id's digest. Two different ids share one with a chance of 2^-72 per pair; with at most 512
 * entries kept, a new event is mistaken for a repeat about once in 10^19 events.
 */
export function idDigest(id: string): string {
  return hash('sha1', id, 'base64url').slice(0, DIGEST_CHARS);
}

export function entryCount(recent: string): number {
  return recent.length / ENTRY_CHARS;
}

/** Whether `digest` is one of the entries of `recent`. */
export function holds(recent: string, digest: string): boolean {
  for (let at = recent.indexOf(digest); at >= 0; at = recent.indexOf(digest, at + 1)) {
    if (at % ENTRY_CHARS === 0) return true; // a match that straddles two entries is not one
  }
  return false;
}

/** `recent` with one more entry at its end (the newest). */
export function withEntry(recent: string, digest: string, receivedAtMs: number): string {
  const second = Math.max(0, Math.floor(receivedAtMs / 1000)).toString(36).padStart(SECOND_CHARS, '0');
  return recent + digest + second;
}

/** When entry `index` (0: the oldest) was received, in ms since the epoch (to the second). */
export function receivedAt(recent: string, index: number): number {
  const from = index * ENTRY_CHARS + DIGEST_CHARS;
  return parseInt(recent.slice(from, from + SECOND_CHARS), 36) * 1000;
}

/**
 * Keeps at most `kept` of the newest entries, then drops from the oldest end those received more
 * than `windowMs` before `newestMs`.
 */
export function trimmed(recent: string, kept: number, windowMs: number, newestMs: number): string {
  const count = entryCount(recent);
  let from = Math.max(0, count - kept);
  // Second resolution: an entry is kept up to a second longer than the window, never shorter.
  while (from < count && receivedAt(recent, from) + 1000 <= newestMs - windowMs) from++;
  return from === 0 ? recent : recent.slice(from * ENTRY_CHARS);
}
