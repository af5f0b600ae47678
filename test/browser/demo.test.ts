// The demo page in Debian's Chromium against the real service (`npm start`'s composition, embedded
// PostgreSQL, visitors imported with `face-recog visitors import`): gallery status, the live camera
// (a fake camera playing frames of the Hamilton clip) naming Lin-Manuel Miranda on his face's track
// and listing his arrival beside the camera, and the photo upload drawing one box per detected face. Screenshots go to test-output/browser/.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, fixturesMissing, readTestdata, testdataPath } from '../helpers/fixtures.js';
import { chromiumMissing, launchWithFakeCamera } from './helpers/chromium.js';
import { rgbToI420, writeFakeCamera } from './helpers/fake-camera.js';
import { faceRecogCli, startServiceProcess, waitForGalleryFaces, type ServiceProcess } from './helpers/service-process.js';

const run = promisify(execFile);
const SCREENSHOTS = join(REPO_ROOT, 'test-output', 'browser');
// Frames where the largest face is Lin-Manuel Miranda (testdata MANIFEST.md).
const CAMERA_FRAMES = ['090', '120', '150', '180', '210'].map((n) => testdataPath(`video/frames/frame_${n}.jpg`));
const VISITORS = { lin_manuel_miranda: 'faces/lin_manuel_miranda/1.jpg', obama: 'faces/obama/1.jpg', biden: 'faces/biden/1.jpg' };
const GROUP_PHOTO = 'multi/obama_and_biden.jpg';
const NAME_WITHIN_MS = 10_000;

describe('fake camera video', () => {
  it('converts RGB to full-range BT.601 I420', () => {
    const pixels = (rgb: number[]) => new Uint8Array(Array.from({ length: 4 }, () => rgb).flat());
    expect([...rgbToI420(pixels([255, 255, 255]), 2, 2)]).toEqual([255, 255, 255, 255, 128, 128]);
    expect([...rgbToI420(pixels([0, 0, 0]), 2, 2)]).toEqual([0, 0, 0, 0, 128, 128]);
    expect([...rgbToI420(pixels([255, 0, 0]), 2, 2)]).toEqual([76, 76, 76, 76, 85, 255]);
  });
});

describe.skipIf(fixturesMissing || chromiumMissing)('demo page in Chromium against the real service', () => {
  let work: string;
  let service: ServiceProcess;
  let context: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'face-recog-browser-'));
    // Run as root, the embedded PostgreSQL runs as the `postgres` user, who must traverse to DATA_DIR.
    await chmod(work, 0o711);
    await mkdir(SCREENSHOTS, { recursive: true });
    // The page loads the client's browser build from /client/: build it from the current source.
    await run(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(REPO_ROOT, 'packages/client/tsconfig.build.json')]);
    const y4m = join(work, 'camera.y4m');
    await writeFakeCamera(CAMERA_FRAMES, y4m);

    service = await startServiceProcess(join(work, 'data'));
    const visitorsDir = join(work, 'visitors');
    for (const [visitorId, photo] of Object.entries(VISITORS)) {
      await mkdir(join(visitorsDir, visitorId), { recursive: true });
      await copyFile(testdataPath(photo), join(visitorsDir, visitorId, '1.jpg'));
    }
    const imported = await faceRecogCli(service, ['visitors', 'import', visitorsDir]);
    expect(imported).toContain('lin_manuel_miranda');
    await waitForGalleryFaces(service, Object.keys(VISITORS).length);

    context = await launchWithFakeCamera(join(work, 'chromium-profile'), y4m);
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(service.url);
  }, 240_000);

  afterAll(async () => {
    await context?.close();
    await service?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('shows the gallery status from /health', async () => {
    await page.locator('#status[data-status="ok"]').waitFor();
    await expect.poll(() => page.textContent('#gallery-visitors')).toBe('3');
    expect(await page.textContent('#gallery-faces')).toBe('3');
    expect(await page.textContent('#gallery-failed')).toBe('0');
    expect(await page.textContent('#service-models')).toContain('mobilefacenet');
  });

  it('live camera: the enrolled visitor id appears over the face, with its track id, within 10 s; his arrival is listed', async () => {
    const clickedAt = performance.now();
    await page.click('#live-start');
    // Read in one go while the label is there: each answer replaces the labels.
    const seen = await page.waitForFunction(
      () => {
        const label = document.querySelector<HTMLElement>('#live-labels .face-label[data-visitor-id="lin_manuel_miranda"]');
        if (!label) return null;
        const overlay = document.getElementById('live-overlay') as HTMLCanvasElement;
        const rect = (e: Element) => {
          const { x, y, width, height } = e.getBoundingClientRect();
          return { x, y, width, height };
        };
        return {
          text: label.querySelector('.who')?.textContent,
          trackId: label.dataset.trackId,
          trackText: label.querySelector('.track')?.textContent,
          allTracked: [...document.querySelectorAll<HTMLElement>('#live-labels .face-label')].every((l) => Boolean(l.dataset.trackId)),
          matched: label.dataset.matched,
          box: label.dataset.box!.split(',').map(Number),
          picture: { width: overlay.width, height: overlay.height },
          label: rect(label),
          stage: rect(document.getElementById('live-stage')!),
          boxesDrawn: Number(overlay.dataset.boxesDrawn),
          firstNameMs: Number(document.getElementById('live')!.dataset.firstNameMs),
        };
      },
      undefined,
      { timeout: NAME_WITHIN_MS },
    );
    const seenAfterMs = Math.round(performance.now() - clickedAt);
    const screenshot = join(SCREENSHOTS, 'live-recognised.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    const live = (await seen.jsonValue())!;
    console.log(`live page: first frame -> first name ${live.firstNameMs} ms (page clock); click -> name visible ${seenAfterMs} ms (test clock)`);
    console.log(`screenshot: ${screenshot}`);

    expect(live.matched).toBe('true');
    expect(live.text).toMatch(/^lin_manuel_miranda \d\.\d\d$/);
    expect(live.trackId).toMatch(/\S/);
    expect(live.trackText).toBe(`track ${live.trackId}`);
    expect(live.allTracked).toBe(true);
    // The arrival came before the results that named him: it is listed already, once.
    const arrivals = page.locator('#live-arrivals li');
    expect(await arrivals.count()).toBe(1);
    const arrival = arrivals.first();
    expect(await arrival.getAttribute('data-visitor-id')).toBe('lin_manuel_miranda');
    expect(await arrival.getAttribute('data-track-id')).toMatch(/\S/);
    expect(await arrival.locator('strong').textContent()).toBe('lin_manuel_miranda');
    expect(Date.parse((await arrival.locator('time').getAttribute('datetime'))!)).toBeGreaterThan(Date.now() - 60_000);
    expect(await arrival.textContent()).toMatch(/ · \d\.\d\d · track \S+$/);
    // Beside the camera, not below it, on a wide screen.
    const stageBox = (await page.locator('#live-stage').boundingBox())!;
    const listBox = (await page.locator('.arrivals').boundingBox())!;
    expect(listBox.x).toBeGreaterThanOrEqual(stageBox.x + stageBox.width);
    expect(listBox.y).toBeLessThan(stageBox.y + stageBox.height);
    expect(live.firstNameMs).toBeGreaterThan(0);
    expect(live.boxesDrawn).toBeGreaterThan(0);
    // The label sits on its face: horizontally over the face's box as shown on the page, on its top
    // edge (or its bottom edge when the face touches the top of the picture).
    const scale = live.stage.width / live.picture.width;
    const [x, y, w, h] = live.box;
    const faceLeft = live.stage.x + x * scale;
    const faceTop = live.stage.y + y * scale;
    expect(live.label.x).toBeLessThan(faceLeft + w * scale);
    expect(live.label.x + live.label.width).toBeGreaterThan(faceLeft);
    const onTopEdge = Math.abs(live.label.y + live.label.height - faceTop) < 2;
    const onBottomEdge = Math.abs(live.label.y - (faceTop + h * scale)) < 2;
    expect(onTopEdge || onBottomEdge).toBe(true);

    await expect.poll(() => page.textContent('#live-fps')).toMatch(/^\d+\.\d$/);
    expect(await page.textContent('#live-latency')).toMatch(/^\d+ ms$/);
    expect(await page.textContent('#live-connection')).toBe('connected');
    await page.click('#live-stop');
  });

  it('photo upload: one box per face that /api/v1/detect finds, with visitor ids', async () => {
    const detected = (await (
      await fetch(`${service.url}/api/v1/detect`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ image: readTestdata(GROUP_PHOTO).toString('base64') }),
      })
    ).json()) as { count: number; faces: { bbox: number[] }[] };
    expect(detected.count).toBe(3);

    await page.setInputFiles('#photo-file', testdataPath(GROUP_PHOTO));
    await page.locator('#photo[data-state="done"]').waitFor();
    expect(await page.getAttribute('#photo-canvas', 'data-boxes-drawn')).toBe(String(detected.count));
    expect(await page.locator('#photo-labels .face-label').count()).toBe(detected.count);
    expect(await page.locator('#photo-faces li').count()).toBe(detected.count);
    const names = await page.locator('#photo-labels .face-label[data-matched="true"]').evaluateAll((labels) =>
      labels.map((l) => (l as HTMLElement).dataset.visitorId).sort(),
    );
    expect(names).toEqual(['biden', 'obama']);
    // Each face's line gives its match (the answer's `confidence`) and the detector's score (`detection_confidence`).
    const lines = await page.locator('#photo-faces li').allTextContents();
    expect(lines.filter((line) => /^(biden|obama): similarity 0\.\d{3}, detector 0\.\d\d$/.test(line))).toHaveLength(2);
    expect(lines.filter((line) => /^unknown: similarity -?0\.\d{3}, detector 0\.\d\d$/.test(line))).toHaveLength(1);

    // The boxes are really on the canvas: the middle of each detected box's top edge has a box colour.
    const edgeColours = await page.evaluate((boxes) => {
      const canvas = document.getElementById('photo-canvas') as HTMLCanvasElement;
      const context = canvas.getContext('2d')!;
      return boxes.map(([x, y, w]) => Array.from(context.getImageData(Math.round(x + w / 2), Math.round(y), 1, 1).data.slice(0, 3)));
    }, detected.faces.map((f) => f.bbox));
    const boxColours = [
      [0x16, 0xa3, 0x4a],
      [0xf5, 0x9e, 0x0b],
    ];
    for (const colour of edgeColours) {
      expect(boxColours.some((box) => box.every((c, i) => Math.abs(c - colour[i]) <= 8))).toBe(true);
    }

    const screenshot = join(SCREENSHOTS, 'photo-obama-and-biden.png');
    await page.locator('#photo').screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);
  });

  it('fits a phone screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    const screenshot = join(SCREENSHOTS, 'phone.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  });

  it('the API key field is kept in localStorage and sent with HTTP calls and the realtime socket', async () => {
    await page.fill('#api-key', 'demo-key');
    await page.click('#key-form button[type="submit"]');
    await page.reload();
    expect(await page.inputValue('#api-key')).toBe('demo-key');

    const recognizeCall = page.waitForRequest((request) => request.url().endsWith('/api/v1/recognize'));
    await page.setInputFiles('#photo-file', testdataPath('faces/obama/2.jpg'));
    expect((await recognizeCall).headers().authorization).toBe('Bearer demo-key');

    const socket = page.waitForEvent('websocket');
    await page.click('#live-start');
    expect(new URL((await socket).url()).searchParams.get('api_key')).toBe('demo-key');
    await page.click('#live-stop');
  });

  it('ran without a script error', () => {
    expect(pageErrors).toEqual([]);
  });
});
