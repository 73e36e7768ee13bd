// A Lua script run atomically in Redis: EVALSHA first, EVAL when the server does not know it yet
// (a restarted or fresh Redis). Every multi-key change of the cluster's state is one of these.

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

export class LuaScript {
  readonly sha: string;

  /** `name` says what the script does; it appears in errors. */
  constructor(
    readonly name: string,
    readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) {
        throw new Error(`redis script ${this.name} failed: ${(err as Error).message}`);
      }
      try {
        return await redis.eval(this.source, keys.length, ...keys, ...args);
      } catch (err2) {
        throw new Error(`redis script ${this.name} failed: ${(err2 as Error).message}`);
      }
    }
  }
}
