// The presence subcommands, run in-process against a real gateway (handlers behind a stub sink).

import test from 'ava';
import { commands } from '../../../gateways/presence/commands.js';
import { PresenceServer } from '../../../gateways/presence/server.js';

const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    return { code: await fn(), out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test.serial('presence-count prints the count in the original demo\'s words', async (t) => {
  const server = new PresenceServer({ sink: { reporter: () => () => {}, onlineUsers: async () => 1 }, log: silent });
  t.teardown(() => server.stop(100));
  const port = await server.listen('127.0.0.1', 0);
  const r = await capture(() => commands['presence-count']!.run({ gateway: `127.0.0.1:${port}` }, []));
  t.is(r.code, 0);
  t.is(r.out, 'There was 1 user online in the last 3 mins');
  await server.stop();
  const down = await capture(() => commands['presence-count']!.run({ gateway: `127.0.0.1:${port}` }, []));
  t.is(down.code, 1);
  t.regex(down.err, /cannot reach the StatusReader/);
});

test.serial('presence-client gives up with exit code 1 when the gateway refuses its id', async (t) => {
  const server = new PresenceServer({ sink: { reporter: () => () => {}, onlineUsers: async () => 0 }, log: silent });
  t.teardown(() => server.stop(100));
  const port = await server.listen('127.0.0.1', 0);
  const r = await capture(() => commands['presence-client']!.run({ gateway: `127.0.0.1:${port}`, id: 'has space', clients: 0 }, []));
  t.is(r.code, 1);
  t.regex(r.err, /refused this client \(code 3: .*user-id/);
  const none = await capture(() => commands['presence-client']!.run({ gateway: `127.0.0.1:${port}`, clients: 0 }, []));
  t.is(none.code, 2);
  await server.stop();
});
