// Stable placement of actors: partition = FNV-1a(utf8("type/key")) mod P, the same in every
// process, every thread and every run. Partitions, not actors, are the unit of placement.

export const DEFAULT_PARTITIONS = 1024;

const encoder = new TextEncoder();

/** 32-bit FNV-1a over the UTF-8 bytes of `s`. ASCII takes a fast path with no allocation. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return fnv1aBytes(encoder.encode(s));
    h ^= c;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function fnv1aBytes(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function partitionOf(actorId: string, partitions: number): number {
  return fnv1a(actorId) % partitions;
}

export function actorId(type: string, key: string): string {
  return type + '/' + key;
}

/** Splits `type/key` (the key may itself contain `/`). */
export function parseActorId(id: string): { type: string; key: string } {
  const slash = id.indexOf('/');
  if (slash <= 0) throw new TypeError(`"${id}" is not an actor id: expected "type/key"`);
  return { type: id.slice(0, slash), key: id.slice(slash + 1) };
}
