// The dashboard of an embedded `troupe node` in a real headless Chromium: no console errors, the
// node and every service named, 1,024 partitions, the numbers of /metrics, an actor's state in
// three clicks; and the API's refusals (inspector off, bad input, writes, unknown paths).

import test from 'ava';
import { InspectorClient } from '../../../runtime/inspector/client.js';
import { chromiumMissing, openPage } from './browser.js';
import { getJson, metricSum, startCliNode } from './cli-node.js';

const SERVICES = ['presence', 'dating', 'carts', 'who', 'events'];
const ports0 = ['--presence-port', '0', '--dating-source-port', '0', '--dating-listener-port', '0', '--carts-port', '0', '--who-port', '0', '--events-port', '0'];
const missing = chromiumMissing();
const browserTest = missing ? test.skip : test.serial;
if (missing) console.warn(`dashboard browser tests skipped: ${missing}`);

browserTest('an embedded node: the page names the node and every service, shows 1,024 partitions, agrees with /metrics, and reaches a state in three clicks', async (t) => {
  t.timeout(180_000);
  const node = await startCliNode(t, 'emb', [...ports0, '--shards', '2']);
  // Some turns to count: asks to user actors through the node's inspector.
  const inspector = new InspectorClient(`127.0.0.1:${node.ports.cluster}`, { timeoutMs: 10_000 });
  t.teardown(() => inspector.close());
  for (let i = 0; i < 25; i++) {
    const r = await inspector.send({ id: `user/u${i}`, handler: 'pong', messageJson: JSON.stringify({ status: 2, atMs: Date.now() }), ask: true, askTimeoutMs: 10_000 });
    t.true(r.ok, r.failure?.message);
  }

  const browser = await openPage(`${node.ops}/dashboard`);
  t.teardown(() => browser.close());
  const { page } = browser;
  await browser.ready();
  t.is(await page.locator('#self-name').textContent(), node.nodeId);
  t.is(await page.locator('#nodes-table tbody tr').count(), 1);
  t.is(await page.locator('#nodes-table tbody tr').getAttribute('data-node'), node.nodeId);
  for (const s of SERVICES) t.is(await page.locator(`[data-service="${s}"]`).count(), 1, `service ${s} shown`);
  t.is(await page.locator('#partition-map .cell').count(), 1024);
  t.is(await page.locator(`#partition-map .cell[data-owner="${node.nodeId}"]`).count(), 1024);

  // Quiet now: the page's figures are /metrics' (read after the page's next refresh).
  await page.locator('[data-type="user"] [data-field="turns"]', { hasText: /^25$/ }).waitFor({ timeout: 20_000 });
  const metrics = await (await fetch(`${node.ops}/metrics`)).text();
  const cell = async (type: string, field: string) => Number((await page.locator(`[data-type="${type}"] [data-field="${field}"]`).textContent())!.replace(/,/g, ''));
  const types = await page.locator('#types-table tbody tr[data-type]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-type')!));
  let turns = 0;
  let activations = 0;
  for (const ty of types) {
    turns += await cell(ty, 'turns');
    activations += await cell(ty, 'activations');
  }
  t.is(turns, metricSum(metrics, 'troupe_turns_total'));
  t.is(activations, metricSum(metrics, 'troupe_activations'));
  t.is(await cell('user', 'activations'), 25);
  await browser.screenshot('embedded');

  // Three clicks: the type, the actor (the state shows), from the front page.
  await page.click('[data-type="user"] a.type-link');
  await page.waitForSelector('#actor-table tbody tr[data-actor="user/u7"]', { timeout: 20_000 });
  t.is(await page.locator('#actor-table tbody tr[data-actor]').count(), 25);
  await page.fill('#actor-filter', 'u1');
  await page.locator('#actor-table tbody tr[data-actor="user/u2"]').waitFor({ state: 'detached', timeout: 20_000 });
  t.is(await page.locator('#actor-table tbody tr[data-actor]').count(), 11);
  await page.click('#actor-table tbody tr[data-actor="user/u12"] a');
  await page.waitForSelector('#state-json', { timeout: 20_000 });
  const state = JSON.parse((await page.locator('#state-json').textContent())!) as { presence: { lastStatus: number } };
  t.is(state.presence.lastStatus, 2);
  const fromInspector = await inspector.state('user/u12');
  t.deepEqual(state, JSON.parse(fromInspector.json));
  await browser.screenshot('embedded-actor');
  // Keyboard: the type links are reachable with Tab and open the list with Enter.
  await page.goto(`${node.ops}/dashboard`);
  await browser.ready();
  await page.focus('[data-type="user"] a.type-link');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#actor-table tbody tr[data-actor]', { timeout: 20_000 });
  t.deepEqual(browser.errors, []);
});

test('the API refuses what it must: actors and states with --inspector off, bad ids, writes, unknown paths', async (t) => {
  t.timeout(120_000);
  const node = await startCliNode(t, 'off', ['--gateways', 'who', '--who-port', '0', '--inspector', 'off', '--shards', '1']);
  const status = async (path: string, init?: RequestInit) => (await fetch(`${node.ops}${path}`, init)).status;
  const body = async (path: string) => (await (await fetch(`${node.ops}${path}`)).json()) as { error?: string };
  t.is(await status('/dashboard/api/node/actors?type='), 403);
  t.regex((await body('/dashboard/api/node/state?id=user/x')).error ?? '', /--inspector off/);
  t.is(await status('/dashboard/api/state?id=noslash'), 400);
  t.is(await status(`/dashboard/api/state?id=${'x/'.repeat(2000)}`), 400);
  t.is(await status('/dashboard/api/actors?type=nosuchtype'), 404);
  t.is(await status('/dashboard/api/actors?limit=-3'), 400);
  t.is(await status('/dashboard/api/cluster', { method: 'POST', body: '{}' }), 405);
  t.is(await status('/dashboard/static/../../package.json'), 404);
  t.is(await status('/dashboard/static/%2e%2e%2fpackage.json'), 404);
  t.is(await status('/dashboard/nothing'), 404);
  // What is not the actors' is shown with the inspector off: the node, its partitions, its services.
  const view = await getJson<{ nodes: { nodeId: string; inspector: string }[]; owner: number[]; services: { name: string }[] }>(`${node.ops}/dashboard/api/cluster`);
  t.is(view.nodes[0]!.nodeId, node.nodeId);
  t.is(view.nodes[0]!.inspector, 'off');
  t.is(view.owner.filter((o) => o === 0).length, 1024);
  t.deepEqual(view.services.map((s) => s.name), ['who']);
  t.is(await status('/metrics'), 200);
});
