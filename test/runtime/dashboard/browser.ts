// A real headless Chromium for the dashboard tests: Debian's `chromium`, driven by playwright-core,
// in a fresh empty profile; nothing downloads a browser. Screenshots go to test-artifacts/ (gitignored).

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { projectRoot } from '../../../runtime/paths.js';

export const CHROMIUM = process.env.TROUPE_TEST_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `no Chromium at ${CHROMIUM}: install Debian's package (apt-get install -y chromium; .ci/run does) or set TROUPE_TEST_CHROMIUM`;
}

export const ARTIFACTS = join(projectRoot(), 'test-artifacts', 'dashboard');

export interface BrowserPage {
  page: Page;
  /** Console errors and page errors seen so far. */
  errors: string[];
  /** Waits until the page drew its first sample; the failure says what the page showed instead. */
  ready(timeoutMs?: number): Promise<void>;
  screenshot(name: string): Promise<string>;
  close(): Promise<void>;
}

export async function openPage(url: string, viewport = { width: 1440, height: 1000 }): Promise<BrowserPage> {
  const profile = mkdtempSync(join(tmpdir(), 'troupe-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page: ${e.message}`));
  // A poll cut short by the test navigating away is not the page's fault.
  page.on('requestfailed', (r) => {
    if (r.failure()?.errorText !== 'net::ERR_ABORTED') errors.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`);
  });
  await page.goto(url);
  return {
    async ready(timeoutMs = 60_000) {
      try {
        await page.waitForSelector('body[data-ready]', { timeout: timeoutMs });
      } catch (err) {
        const live = await page.locator('#live').textContent().catch(() => '?');
        const problem = await page.locator('#problem').textContent().catch(() => '?');
        throw new Error(`the dashboard did not draw within ${timeoutMs} ms (status "${live}", problem "${problem}", errors ${JSON.stringify(errors)}): ${(err as Error).message}`);
      }
    },
    page,
    errors,
    async screenshot(name) {
      mkdirSync(ARTIFACTS, { recursive: true });
      const path = join(ARTIFACTS, `${name}.png`);
      await page.screenshot({ path, fullPage: true, timeout: 120_000 });
      return path;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
