// Debian's Chromium driven by playwright-core, with a fake camera playing a .y4m file.
import { existsSync } from 'node:fs';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Why the browser tests cannot run, or null. Throws in CI: a missing browser must fail the run. */
export const chromiumMissing: string | null = (() => {
  if (existsSync(CHROMIUM)) return null;
  const reason = `${CHROMIUM} not found (apt-get install chromium, as .ci/run does, or set CHROMIUM_PATH)`;
  if (process.env.CI) throw new Error(reason);
  console.warn(`skipping browser tests: ${reason}`);
  return reason;
})();

/** A fresh profile in `userDataDir`, the camera fed from `y4m`, camera permission granted. */
export function launchWithFakeCamera(userDataDir: string, y4m: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      `--use-file-for-fake-video-capture=${y4m}`,
    ],
  });
}
