// Stopping a grpc-js server: let calls in flight finish, and cut what is left after a grace period.

import type * as grpc from '@grpc/grpc-js';

/**
 * Stops accepting, waits for the calls in flight to end, and force-closes whatever is still open
 * after `graceMs`; resolves once the server is down either way.
 */
export function shutdownGrpcServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    force.unref();
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
