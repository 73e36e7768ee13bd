// The presence gateway on a real Troupe node: real gRPC clients, Pongs told to durable `user/<id>`
// actors, the count from the user type's view over every shard; the 3-minute window with an
// injected clock; uniqueness across reconnections and gateway restarts; and SIGKILL of the node.

import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface, type Interface } from 'node:readline';
import User from '../../../actors/user.js';
import type { PresenceState } from '../../../actors/user-presence.js';
import { fetchOnlineUsers, gatewayConnection, PresenceClient } from '../../../gateways/presence/client.js';
import { PresenceSimulation } from '../../../gateways/presence/simulation.js';
import { startPresenceNode, tempDir, until } from './helpers.js';

test('clients over gRPC: each Pong reaches user/<id>, and the count is the number of unique users', async (t) => {
  const p = await startPresenceNode({ dataDir: tempDir() });
  t.teardown(() => p.stop());
  const sim = new PresenceSimulation({ address: p.address, clients: 40, idPrefix: 'n-', connections: 2 });
  await sim.start();
  await until('every client pinged twice', () => sim.clients.every((c) => c.pings >= 2));
  await until('40 online', async () => (await fetchOnlineUsers(p.address)) === 40);
  const state = (await p.node.ref(User, 'n-7').ask('presence')) as PresenceState;
  t.true(state.lastStatus === 1 || state.lastStatus === 2);
  t.true(typeof state.lastOnlineMs === 'number' && Math.abs(state.lastOnlineMs - Date.now()) < 10_000);
  sim.stop();
  t.is(await fetchOnlineUsers(p.address), 40, 'leaving does not make a user offline before 3 minutes');
});

test('the 3-minute window on a node, with an injected clock', async (t) => {
  let now = 1_800_000_000_000;
  const p = await startPresenceNode({ dataDir: tempDir(), clock: () => now });
  t.teardown(() => p.stop());
  const sim = new PresenceSimulation({ address: p.address, clients: 10, idPrefix: 'w-' });
  await sim.start();
  await until('10 online', async () => (await fetchOnlineUsers(p.address)) === 10);
  sim.stop();
  // Pongs already in flight are stamped with the old time: let them land before moving the clock.
  await new Promise((r) => setTimeout(r, 200));
  now += 120_000;
  t.is(await fetchOnlineUsers(p.address), 10);
  now += 59_000;
  t.is(await fetchOnlineUsers(p.address), 10, '179 s after the last Pong: still online');
  now += 2_000;
  t.is(await fetchOnlineUsers(p.address), 0, '181 s after the last Pong: offline');
});

test('uniqueness across reconnections and a gateway restart on the same data', async (t) => {
  const dataDir = tempDir();
  let p = await startPresenceNode({ dataDir });
  for (let round = 0; round < 3; round++) {
    const conn = gatewayConnection(p.address);
    const clients = ['r-a', 'r-b', 'r-c'].map((id) => new PresenceClient({ id, connection: conn }));
    clients.forEach((c) => c.start());
    await until('pinged', () => clients.every((c) => c.pings >= 2));
    clients.forEach((c) => c.stop());
    conn.close();
  }
  await until('3 online', async () => (await fetchOnlineUsers(p.address)) === 3);
  await p.stop();
  p = await startPresenceNode({ dataDir });
  t.teardown(() => p.stop());
  t.is(await fetchOnlineUsers(p.address), 3, 'restored from the stored states after a graceful restart');
  const conn = gatewayConnection(p.address);
  const again = new PresenceClient({ id: 'r-b', connection: conn });
  again.start();
  await until('pinged', () => again.pings >= 2);
  t.is(await fetchOnlineUsers(p.address), 3);
  again.stop();
  conn.close();
});

/** The node in a child process, which the test can SIGKILL. */
class ChildNode {
  readonly child: ChildProcess;
  readonly lines: Interface;
  readonly address: Promise<string>;
  #waiters: ((line: string) => boolean)[] = [];

  constructor(dataDir: string) {
    this.child = spawn(process.execPath, [new URL('./node-child.js', import.meta.url).pathname, dataDir], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, TROUPE_LOG_LEVEL: 'warn' },
    });
    this.lines = createInterface({ input: this.child.stdout! });
    this.lines.on('line', (line) => {
      this.#waiters = this.#waiters.filter((w) => !w(line));
    });
    this.address = this.expect(/^READY (\d+)$/).then((m) => `127.0.0.1:${m[1]}`);
  }

  expect(pattern: RegExp): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node child: no line matching ${pattern} within 20 s`)), 20_000);
      this.#waiters.push((line) => {
        const m = pattern.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
        return m !== null;
      });
    });
  }

  async advance(ms: number): Promise<void> {
    const done = this.expect(/^ADVANCED /);
    this.child.stdin!.write(`advance ${ms}\n`);
    await done;
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    const exited = once(this.child, 'exit');
    this.child.kill(signal);
    await exited;
    this.lines.close();
  }
}

test('kill -9 of the node: after a restart on the same data dir the count is the same, then falls after 3 minutes', async (t) => {
  const dataDir = tempDir('troupe-presence-kill-');
  const first = new ChildNode(dataDir);
  t.teardown(() => first.child.kill('SIGKILL'));
  const address = await first.address;
  const sim = new PresenceSimulation({ address, clients: 30, idPrefix: 'k-' });
  await sim.start();
  await until('every client answered three Pings', () => sim.clients.every((c) => c.pings >= 3));
  await until('30 online', async () => (await fetchOnlineUsers(address)) === 30);
  sim.stop();
  // Every Pong handled is committed within one group commit (milliseconds); the clients stopped.
  await new Promise((r) => setTimeout(r, 100));
  t.is(await fetchOnlineUsers(address), 30);
  await first.kill('SIGKILL');

  const second = new ChildNode(dataDir);
  t.teardown(() => second.child.kill('SIGKILL'));
  const address2 = await second.address;
  t.is(await fetchOnlineUsers(address2), 30, 'the same count after kill -9 and restart');
  await second.advance(170_000);
  t.is(await fetchOnlineUsers(address2), 30, 'still counted 170 s later');
  await second.advance(15_000);
  t.is(await fetchOnlineUsers(address2), 0, 'no longer counted once 3 minutes passed');
  await second.kill('SIGTERM');
});
