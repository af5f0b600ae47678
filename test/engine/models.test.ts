// The model store against a local HTTP server: the real download path, never the internet.
import { pbkdf2 } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { editIoShapes, readIoShapes } from '../../src/engine/models/onnx-shapes.js';
import { getModel, type ModelManifest } from '../../src/engine/models/registry.js';
import { createSession } from '../../src/engine/models/session.js';
import { ensureModel, sha256File } from '../../src/engine/models/store.js';
import { FaceRecogError } from '../../src/errors.js';
import { fixturesMissing, MODELS_DIR } from '../helpers/fixtures.js';

const yunet = getModel('yunet-2023mar');
const mobilefacenet = getModel('mobilefacenet');
// Downloads from a server that closes each connection, on a slow disk: Node 22's and 24's own fetch
// crashed on about half of them, so ten fail without the fix all but always.
const CLOSING_DOWNLOADS = 10;

/**
 * Keeps libuv's thread pool busy until the returned stop is called, so that every file write waits
 * as it does on a slow disk and the download's body backs up behind it.
 */
function slowDisk(): () => Promise<void> {
  let running = true;
  const worker = async (): Promise<void> => {
    while (running) await new Promise((resolve) => pbkdf2('x', 'y', 2000, 32, 'sha256', resolve));
  };
  const workers = Array.from({ length: 8 }, worker);
  return async () => {
    running = false;
    await Promise.all(workers);
  };
}

describe.skipIf(fixturesMissing)('model store', () => {
  let server: Server;
  let base: string;
  let modelBytes: Buffer;
  let largerBytes: Buffer;
  let dir: string;
  const requests: string[] = [];

  beforeAll(async () => {
    modelBytes = await readFile(join(MODELS_DIR, yunet.file));
    largerBytes = await readFile(join(MODELS_DIR, mobilefacenet.file));
    server = createServer((req, res) => {
      requests.push(req.url ?? '');
      const [, mode] = (req.url ?? '').split('/');
      if (mode === 'good') {
        res.writeHead(200, { 'content-length': modelBytes.length }).end(modelBytes);
      } else if (mode === 'closes') {
        res.writeHead(200, { 'content-length': largerBytes.length, connection: 'close' }).end(largerBytes);
      } else if (mode === 'wrong-hash') {
        const altered = Buffer.from(modelBytes);
        altered[1000] ^= 0xff;
        res.writeHead(200).end(altered);
      } else if (mode === 'truncated') {
        res.writeHead(200).end(modelBytes.subarray(0, modelBytes.length - 1000));
      } else if (mode === 'too-long') {
        res.writeHead(200).end(Buffer.concat([modelBytes, Buffer.alloc(10)]));
      } else {
        res.writeHead(404).end('not found');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  async function freshDir(): Promise<string> {
    dir = await mkdtemp(join(tmpdir(), 'face-recog-models-'));
    return dir;
  }

  async function failure(promise: Promise<unknown>): Promise<FaceRecogError> {
    const error = await promise.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(FaceRecogError);
    return error as FaceRecogError;
  }

  it('downloads the right file into place, then reuses it without downloading again', async () => {
    const target = await freshDir();
    const progress: number[] = [];
    const path = await ensureModel(yunet, { dir: target, mirror: `${base}/good`, onProgress: (p) => progress.push(p.receivedBytes) });
    expect(path).toBe(join(target, yunet.file));
    expect(Buffer.compare(await readFile(path), modelBytes)).toBe(0);
    expect(progress.at(-1)).toBe(yunet.bytes);
    expect(await readdir(target)).toEqual([yunet.file]);
    const before = requests.length;
    await ensureModel(yunet, { dir: target, mirror: `${base}/good` });
    expect(requests.length).toBe(before);
    await rm(target, { recursive: true });
  });

  it('downloads intact from a server that closes the connection after the body, as plain HTTP/1.0 mirrors do', async () => {
    const stopSlowDisk = slowDisk();
    for (let i = 0; i < CLOSING_DOWNLOADS; i++) {
      const target = await freshDir();
      const path = await ensureModel(mobilefacenet, { dir: target, mirror: `${base}/closes` });
      expect(await sha256File(path)).toBe(mobilefacenet.sha256);
      await rm(target, { recursive: true });
    }
    await stopSlowDisk();
  });

  for (const [mode, code, words] of [
    ['wrong-hash', 'model_checksum_mismatch', yunet.sha256],
    ['truncated', 'model_unavailable', 'truncated'],
    ['too-long', 'model_unavailable', 'more than the expected'],
    ['missing', 'model_unavailable', 'HTTP 404'],
  ] as const) {
    it(`refuses a ${mode} download and leaves no file behind`, async () => {
      const target = await freshDir();
      const error = await failure(ensureModel(yunet, { dir: target, mirror: `${base}/${mode}` }));
      expect(error.code).toBe(code);
      expect(error.message).toContain(words);
      expect(await readdir(target)).toEqual([]);
      await rm(target, { recursive: true });
    });
  }

  it('offline, names the file, size, sha256 and URL of a missing model', async () => {
    const target = await freshDir();
    const error = await failure(ensureModel(yunet, { dir: target, offline: true }));
    expect(error.code).toBe('model_unavailable');
    for (const words of [yunet.file, String(yunet.bytes), yunet.sha256, yunet.url, 'MODELS_OFFLINE']) expect(error.message).toContain(words);
    await rm(target, { recursive: true });
  });

  it('never loads a file whose sha256 differs, even at the right size', async () => {
    const target = await freshDir();
    const altered = Buffer.from(modelBytes);
    altered[5000] ^= 0x01;
    await writeFile(join(target, yunet.file), altered);
    const path = await ensureModel(yunet, { dir: target, offline: true });
    const error = await failure(createSession(yunet, path));
    expect(error.code).toBe('model_checksum_mismatch');
    await writeFile(join(target, yunet.file), altered.subarray(10));
    expect((await failure(ensureModel(yunet, { dir: target, offline: true }))).code).toBe('model_checksum_mismatch');
    await rm(target, { recursive: true });
  });
});

describe.skipIf(fixturesMissing)('ONNX declared shapes', () => {
  it("makes YuNet's input and outputs symbolic and leaves the rest of the file intact", async () => {
    const bytes = await readFile(join(MODELS_DIR, yunet.file));
    expect(readIoShapes(bytes).input).toEqual([1, 3, 640, 640]);
    const edited = editIoShapes(bytes, (yunet as ModelManifest).shapeEdits!);
    const shapes = readIoShapes(edited);
    expect(shapes.input).toEqual([1, 3, 'height', 'width']);
    expect(shapes.kps_8).toEqual([1, 'anchors_8', 10]);
    expect(() => editIoShapes(bytes, { nope: [1] })).toThrow(/no input\/output named nope/);
    expect(() => editIoShapes(bytes, { input: [1, 2] })).toThrow(/rank 4/);
  });
});
