// The inference workers start wherever the service's code runs: from the compiled JavaScript
// (`npm start`), and from TypeScript under tsx (benchmarks, the CLI in development). vitest itself
// is covered by worker-pool.test.ts. Each case is a fresh Node process that starts a pool of two
// workers, analyzes one photo and stops.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS_DIR, REPO_ROOT, fixturesMissing, testdataPath } from '../helpers/fixtures.js';

const run = promisify(execFile);
const BUILD_TIMEOUT_MS = 180_000;

/** A module script that starts the pool from `poolModule`, analyzes one photo and prints the faces found. */
function script(poolModule: string): string {
  return `
import { readFileSync } from 'node:fs';
const { EnginePool } = await import(${JSON.stringify(poolModule)});
const pool = await EnginePool.start({ dir: ${JSON.stringify(MODELS_DIR)}, offline: true, detector: 'yunet-2023mar', recognizer: 'mobilefacenet', intraOpThreads: 1, workers: 2, tasksPerWorker: 1 });
const jpeg = new Uint8Array(readFileSync(${JSON.stringify(testdataPath('faces/obama/1.jpg'))}));
const { faces, embeddings } = await pool.analyzeImage(jpeg, { request: {}, maxFaces: 1, limits: { maxBytes: 1e8, maxPixels: 1e8 } });
const workers = pool.size;
await pool.close();
console.log(JSON.stringify({ faces: faces.length, dimension: embeddings[0].length, workers }));
`;
}

async function analyzeIn(args: string[], poolModule: string) {
  const { stdout } = await run(process.execPath, [...args, '--input-type=module', '-e', script(poolModule)], { cwd: REPO_ROOT, timeout: 120_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

describe.skipIf(fixturesMissing)('inference workers across runtimes', () => {
  mkdirSync(join(REPO_ROOT, 'test-output'), { recursive: true });
  const built = mkdtempSync(join(REPO_ROOT, 'test-output', 'dist-'));
  afterAll(() => rmSync(built, { recursive: true, force: true }));

  it(
    'start from the compiled JavaScript, as `npm start` runs it',
    async () => {
      // A build of its own (beside the repo's node_modules), so the test never runs a stale dist/.
      await run(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', built], { cwd: REPO_ROOT });
      const result = await analyzeIn([], pathToFileURL(join(built, 'engine', 'worker-pool.js')).href);
      expect(result).toEqual({ faces: 1, dimension: 128, workers: 2 });
    },
    BUILD_TIMEOUT_MS,
  );

  it('start from TypeScript under tsx', async () => {
    const result = await analyzeIn(['--import', 'tsx'], pathToFileURL(join(REPO_ROOT, 'src', 'engine', 'worker-pool.ts')).href);
    expect(result).toEqual({ faces: 1, dimension: 128, workers: 2 });
  });
});
