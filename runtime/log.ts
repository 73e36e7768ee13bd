// Structured logs (pino): the process-wide root logger.

import { pino } from 'pino';

export interface Logger {
  trace(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

let root: Logger | undefined;

/** The process-wide logger; level from TROUPE_LOG_LEVEL (default info, "silent" in tests). */
export function rootLogger(): Logger {
  root ??= pino({
    level: process.env.TROUPE_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  }) as unknown as Logger;
  return root;
}

export function setRootLogger(logger: Logger): void {
  root = logger;
}
