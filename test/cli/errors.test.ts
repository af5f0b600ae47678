// The face-recog command when something is wrong: one line saying what, exit 1, never a stack
// trace; and a model download that fails says how to do without it.
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS_DIR, REPO_ROOT, fixturesMissing, testdataPath } from '../helpers/fixtures.js';

const run = promisify(execFile);
const TSX = join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const MAIN = join(REPO_ROOT, 'src', 'cli', 'main.ts');
// The recognizer these machines cannot have: a command that needs it fails, one that does not must not care.
const env = { ...process.env, MODELS_DIR, MODELS_OFFLINE: '1', RECOGNIZER: 'sface-2021dec', LOG_LEVEL: 'info' };

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<Outcome> {
  return run(TSX, [MAIN, ...args], { env: { ...env, ...extraEnv }, cwd: REPO_ROOT }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

/** Exit 1 with exactly one line on stderr, no stack frame in it. */
function expectOneLine(outcome: Outcome): string {
  expect(outcome.code).toBe(1);
  const lines = outcome.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^face-recog: /);
  expect(outcome.stderr).not.toMatch(/\n\s+at /);
  return lines[0];
}

describe.skipIf(fixturesMissing)('face-recog command errors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'face-recog-cli-errors-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('detect needs only the detector model', async () => {
    const { code, stdout } = await cli(['detect', testdataPath('multi/two_people.jpg')]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout).count).toBe(2);
  });

  it('detect and compare of a missing file print one line naming it', async () => {
    expect(expectOneLine(await cli(['detect', join(dir, 'missing.jpg')]))).toContain(`cannot read image ${join(dir, 'missing.jpg')}: no such file`);
    expect(expectOneLine(await cli(['detect', dir]))).toContain(dir);
    expect(expectOneLine(await cli(['detect', testdataPath('labels.csv')]))).toMatch(/image/);
    const compare = expectOneLine(await cli(['compare', join(dir, 'missing.jpg'), testdataPath('faces/obama/1.jpg')], { RECOGNIZER: 'mobilefacenet' }));
    expect(compare).toContain('missing.jpg');
  });

  it('visitors import of a missing folder prints one line naming it', async () => {
    expect(expectOneLine(await cli(['visitors', 'import', join(dir, 'no-such-folder')]))).toContain('no-such-folder');
  });

  describe('a model download that fails names MODELS_DIR, MODELS_OFFLINE and MODELS_MIRROR', () => {
    const fetchFrom = (mirror: string) => cli(['models', 'fetch', 'mobilefacenet'], { MODELS_DIR: join(dir, 'models'), MODELS_OFFLINE: '0', MODELS_MIRROR: mirror });
    const expectAdvice = (line: string) => {
      for (const setting of ['MODELS_DIR', 'MODELS_OFFLINE=1', 'MODELS_MIRROR', 'MobileFaceNet.onnx', join(dir, 'models')]) expect(line).toContain(setting);
    };

    it('when nothing answers', async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const { port } = closed.address() as AddressInfo;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      const line = expectOneLine(await fetchFrom(`http://127.0.0.1:${port}`));
      expect(line).toContain('ECONNREFUSED');
      expectAdvice(line);
    });

    it('when the server has no such file', async () => {
      const mirror = createServer((_request, response) => response.writeHead(404).end('not here'));
      await new Promise<void>((resolve) => mirror.listen(0, '127.0.0.1', resolve));
      try {
        const line = expectOneLine(await fetchFrom(`http://127.0.0.1:${(mirror.address() as AddressInfo).port}/models`));
        expect(line).toContain('HTTP 404');
        expectAdvice(line);
      } finally {
        await new Promise<void>((resolve) => mirror.close(() => resolve()));
      }
    });
  });
});
