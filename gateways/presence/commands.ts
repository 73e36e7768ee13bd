// The presence subcommands of `troupe`: `presence-client` (one client, or N simulated ones) and
// `presence-count` (the StatusReader answer, like the original demo's grpcurl call).

import type { SettingSpec, SettingValues } from '../../runtime/index.js';
import { fetchOnlineUsers, gatewayConnection, PresenceClient } from './client.js';
import { PresenceSimulation } from './simulation.js';

const gatewaySetting: SettingSpec = {
  name: 'gateway',
  kind: 'string',
  default: '127.0.0.1:50051',
  description: 'HOST:PORT of a presence gateway',
};

/** Resolves on SIGINT or SIGTERM; `cancel` removes the listeners when the command ends otherwise. */
function signalled(): { done: Promise<void>; cancel(): void } {
  let stop!: () => void;
  const done = new Promise<void>((resolve) => (stop = resolve));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    done,
    cancel() {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}

export const commands: Record<string, { summary: string; settings: SettingSpec[]; run(values: SettingValues, rest: string[]): Promise<number> }> = {
  'presence-client': {
    summary: 'connect presence clients to a gateway: one with --id, or N simulated ones with --clients N --id-prefix P',
    settings: [
      gatewaySetting,
      { name: 'id', kind: 'string', default: undefined, description: 'the unique id of the one client to run' },
      { name: 'clients', kind: 'int', default: 0, min: 0, max: 1_000_000, description: 'simulate this many clients (ids: the prefix followed by 0..N-1)' },
      { name: 'id-prefix', kind: 'string', default: 'sim-', description: 'id prefix of the simulated clients' },
      { name: 'connections', kind: 'int', default: 0, min: 0, max: 10_000, description: 'HTTP/2 connections the simulated clients share (0: one per 1,000 clients)' },
      { name: 'ramp', kind: 'duration', default: 5000, description: 'spread the simulated clients\' connections over this long' },
      { name: 'report-every', kind: 'duration', default: 5000, min: 100, description: 'print the simulation\'s figures this often' },
    ],
    async run(values) {
      const address = String(values.gateway);
      const clients = Number(values.clients ?? 0);
      if (clients > 0) {
        const connections = Number(values.connections ?? 0);
        const simulation = new PresenceSimulation({
          address,
          clients,
          idPrefix: String(values['id-prefix']),
          connections: connections > 0 ? connections : undefined,
        });
        await simulation.start(Number(values.ramp));
        const report = setInterval(() => {
          const s = simulation.stats();
          console.log(
            `${s.connected}/${s.clients} connected, ${s.pings} pings; ping interval deviation p50 ${s.deviationP50Ms} ms, p99 ${s.deviationP99Ms} ms, max ${Math.round(s.deviationMaxMs)} ms; ${s.gaveUp} gave up`,
          );
          simulation.resetStats();
        }, Number(values['report-every']));
        await signalled().done;
        clearInterval(report);
        simulation.stop();
        return 0;
      }
      const id = values.id;
      if (typeof id !== 'string' || id === '') {
        console.error('presence-client needs --id ID (one client) or --clients N (a simulation)');
        return 2;
      }
      const connection = gatewayConnection(address);
      let exitCode = 0;
      const signal = signalled();
      const done = new Promise<void>((resolve) => {
        const client = new PresenceClient({
          id,
          connection,
          onPing: () => {
            if (client.pings === 1 || client.pings % 60 === 0) console.log(`${id}: ${client.pings} pings answered (connection ${client.connects})`);
          },
          onStreamEnd: (code, details) => {
            if (code !== 0) console.error(`${id}: stream ended (code ${code}: ${details}); reconnecting with backoff`);
          },
          onGiveUp: (code, details) => {
            console.error(`${id}: the gateway refused this client (code ${code}: ${details}); not reconnecting`);
            exitCode = 1;
            resolve();
          },
        });
        client.start();
        signal.done.then(() => {
          client.stop();
          resolve();
        });
      });
      await done;
      signal.cancel();
      connection.close();
      return exitCode;
    },
  },
  'presence-count': {
    summary: 'ask a presence gateway how many unique users were online in the last 3 minutes',
    settings: [gatewaySetting],
    async run(values) {
      try {
        const n = await fetchOnlineUsers(String(values.gateway));
        console.log(`There ${n === 1 ? 'was' : 'were'} ${n} user${n === 1 ? '' : 's'} online in the last 3 mins`);
        return 0;
      } catch (err) {
        console.error(`cannot reach the StatusReader at ${String(values.gateway)}: ${(err as Error).message}`);
        return 1;
      }
    },
  },
};
