// /docs renders in a real browser: Swagger UI loads the OpenAPI document and lists the operations.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturesMissing } from '../helpers/fixtures.js';
import { startServer, type TestServer } from './helpers/server.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const browserMissing: string | null = (() => {
  if (existsSync(CHROMIUM)) return null;
  const reason = `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;
  if (process.env.CI) throw new Error(reason);
  console.warn(`skipping: ${reason}`);
  return reason;
})();

describe.skipIf(fixturesMissing || browserMissing)('interactive docs in a browser', () => {
  let server: TestServer;
  let browser: Browser;
  beforeAll(async () => {
    server = await startServer({ env: { API_KEYS: 'docs-key' } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('renders every contract operation from the generated OpenAPI document', async () => {
    const page = await browser.newPage();
    const failures: string[] = [];
    page.on('pageerror', (error) => failures.push(error.message));
    await page.goto(`${server.url}/docs`);
    await page.waitForSelector('.opblock-summary-path', { timeout: 30_000 });
    const paths = await page.$$eval('.opblock-summary-path', (nodes) => nodes.map((n) => n.getAttribute('data-path')));
    expect(paths).toEqual(
      expect.arrayContaining(['/api/v1/detect', '/api/v1/extract-features', '/api/v1/recognize', '/api/v1/verify', '/health', '/ws/realtime', '/metrics']),
    );
    // The WebSocket's messages are listed with the schemas.
    const models = await page.$$eval('.models [data-json-schema-level="0"] > .json-schema-2020-12-head .json-schema-2020-12__title', (nodes) =>
      nodes.map((n) => n.textContent),
    );
    expect(models).toEqual(expect.arrayContaining(['RealtimeFrame', 'RealtimeResults', 'RealtimeDropped', 'RealtimeErrorMessage']));
    expect(await page.textContent('.info .title')).toContain('face-recog');
    expect(await page.locator('.btn.authorize').count()).toBe(1);
    expect(failures).toEqual([]);
  });
});
