// The node's own files are its own: data directories made 0700 and database files 0600, so other
// users of the machine read no actor state, events or carts.

import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';

/** Makes `dir` (and missing parents) 0700; a directory that already exists keeps the mode its owner gave it. */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/**
 * Creates the file 0600 when it is missing, and makes an existing one 0600: call before SQLite
 * opens it, and SQLite gives its -wal and -shm files the same mode.
 */
export function makePrivateFile(path: string): string {
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
  return path;
}
