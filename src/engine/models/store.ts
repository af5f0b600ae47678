// Where model files live and the one place that downloads them.
// Lookup in MODELS_DIR; a missing file is streamed from its source into a temp file beside the
// target, hashed on the way, and renamed into place only when size and sha256 match.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Agent, Response } from 'undici';
import { FaceRecogError } from '../../errors.js';
import type { ModelManifest } from './registry.js';

export interface DownloadProgress {
  model: string;
  receivedBytes: number;
  totalBytes: number;
}

export interface ModelStoreOptions {
  /** Directory searched for model files and where downloads land. */
  dir: string;
  /** Never download: a missing file is an error that says how to get it. */
  offline?: boolean;
  /** Base URL that replaces each model's own download location (a local mirror). */
  mirror?: string;
  onProgress?: (progress: DownloadProgress) => void;
}

/**
 * undici 8's fetch, not the global one: the undici bundled with Node 22 and 24 (6.x, 7.x) throws an
 * uncatchable AssertionError when a server closes the connection while the body waits on the disk
 * (nodejs/undici#5360; plain HTTP/1.0 mirrors such as `python3 -m http.server` do that). With an
 * Agent of its own, because undici's fetch otherwise shares the global dispatcher of Node's fetch.
 * Loaded at the first download: models already in MODELS_DIR need no HTTP client.
 */
let httpClient: Promise<{ fetch: typeof import('undici').fetch; agent: Agent }> | undefined;
function downloadClient(): NonNullable<typeof httpClient> {
  httpClient ??= import('undici').then(({ fetch, Agent }) => ({ fetch, agent: new Agent() }));
  return httpClient;
}

export function modelUrl(manifest: ModelManifest, mirror?: string): string {
  return mirror ? `${mirror.replace(/\/+$/, '')}/${manifest.file}` : manifest.url;
}

export function describeModel(manifest: ModelManifest): string {
  return `${manifest.file} (${manifest.bytes} bytes, sha256 ${manifest.sha256}) from ${manifest.url}`;
}

async function fileSize(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

function checksumError(manifest: ModelManifest, where: string, got: { bytes: number; sha256?: string }): FaceRecogError {
  const found = got.sha256 ? `${got.bytes} bytes, sha256 ${got.sha256}` : `${got.bytes} bytes`;
  return new FaceRecogError(
    'model_checksum_mismatch',
    `model '${manifest.name}' at ${where} is not the pinned file: found ${found}, expected ${manifest.bytes} bytes, sha256 ${manifest.sha256}. ` +
      `Delete it and run \`npx face-recog models fetch ${manifest.name}\`.`,
  );
}

/** Refuses bytes that are not exactly the pinned model file. */
export function verifyModelBytes(manifest: ModelManifest, bytes: Uint8Array, where: string): void {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (bytes.byteLength !== manifest.bytes || sha256 !== manifest.sha256) {
    throw checksumError(manifest, where, { bytes: bytes.byteLength, sha256 });
  }
}

/** What a person can do when a download fails: where the file goes, and the settings that avoid downloading. */
function downloadAdvice(manifest: ModelManifest, target: string): string {
  return (
    `To run without downloading, put ${describeModel(manifest)} into MODELS_DIR (${dirname(target)}) and set MODELS_OFFLINE=1, ` +
    `or set MODELS_MIRROR to a base URL that serves ${manifest.file}.`
  );
}

/** fetch's own "fetch failed" says nothing: the network error under it does (ENOTFOUND, ECONNREFUSED, a TLS failure). */
function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message;
  return detail ? `${(error as Error).message} (${detail})` : (error as Error).message;
}

/** Streams `url` into `target`, checking size and sha256 before the atomic rename. */
export async function downloadModel(
  manifest: ModelManifest,
  url: string,
  target: string,
  onProgress?: (progress: DownloadProgress) => void,
): Promise<void> {
  let response: Response;
  try {
    const { fetch, agent } = await downloadClient();
    response = await fetch(url, { redirect: 'follow', dispatcher: agent });
  } catch (cause) {
    throw new FaceRecogError(
      'model_unavailable',
      `cannot download model '${manifest.name}' from ${url}: ${networkReason(cause)}. ${downloadAdvice(manifest, target)}`,
      { cause },
    );
  }
  if (!response.ok || !response.body) {
    throw new FaceRecogError('model_unavailable', `cannot download model '${manifest.name}': HTTP ${response.status} from ${url}. ${downloadAdvice(manifest, target)}`);
  }
  const temp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.part`;
  const hash = createHash('sha256');
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > manifest.bytes) {
        callback(new Error(`more than the expected ${manifest.bytes} bytes`));
        return;
      }
      hash.update(chunk);
      onProgress?.({ model: manifest.name, receivedBytes: received, totalBytes: manifest.bytes });
      callback(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), meter, createWriteStream(temp));
    if (received !== manifest.bytes) {
      throw new FaceRecogError(
        'model_unavailable',
        `download of model '${manifest.name}' from ${url} was truncated: got ${received} of ${manifest.bytes} bytes`,
      );
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== manifest.sha256) throw checksumError(manifest, url, { bytes: received, sha256 });
    await rename(temp, target);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    if (error instanceof FaceRecogError) throw error;
    throw new FaceRecogError(
      'model_unavailable',
      `download of model '${manifest.name}' from ${url} failed: ${networkReason(error)}. ${downloadAdvice(manifest, target)}`,
      { cause: error },
    );
  }
}

/** The path of the model file, downloading it first when it is missing (unless offline). */
export async function ensureModel(manifest: ModelManifest, options: ModelStoreOptions): Promise<string> {
  const target = join(options.dir, manifest.file);
  const size = await fileSize(target);
  if (size !== null) {
    if (size !== manifest.bytes) throw checksumError(manifest, target, { bytes: size });
    return target;
  }
  if (options.offline) {
    throw new FaceRecogError(
      'model_unavailable',
      `model '${manifest.name}' is missing from ${options.dir} and MODELS_OFFLINE=1 forbids downloading it. ` +
        `Get ${describeModel(manifest)} and place it in ${options.dir}, or run \`npx face-recog models fetch ${manifest.name}\` where the internet is reachable.`,
    );
  }
  await mkdir(options.dir, { recursive: true });
  await downloadModel(manifest, modelUrl(manifest, options.mirror), target, options.onProgress);
  return target;
}
