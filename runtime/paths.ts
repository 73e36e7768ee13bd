// Where the project's own files are (protos, the shard worker), whether running from dist/ or not.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The folder holding package.json: the repository root, or the installed package's. */
export function projectRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'protos'))) return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the Troupe project root (package.json beside protos/) above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** Absolute path of a file under protos/. */
export function protoPath(...parts: string[]): string {
  return join(projectRoot(), 'protos', ...parts);
}
