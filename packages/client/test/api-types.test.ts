// The client's types are the service's schemas: api-types.ts is generated from src/server/schemas.ts
// and must be what the schemas give now, and the client must compile for a backend that type-checks
// strictly (`exactOptionalPropertyTypes` included), as test/consumer/backend.ts does.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../../test/helpers/fixtures.js';
import { API_TYPES_PATH, renderApiTypes } from '../../../tools/client-types.js';

const run = promisify(execFile);

describe('client types', () => {
  it('api-types.ts is what the service schemas generate (else: npm run client:types)', async () => {
    expect(await readFile(API_TYPES_PATH, 'utf8')).toBe(await renderApiTypes());
  });

  it('compile for a backend with exactOptionalPropertyTypes', async () => {
    const tsc = join(REPO_ROOT, 'node_modules', '.bin', 'tsc');
    const project = join(REPO_ROOT, 'packages', 'client', 'test', 'consumer', 'tsconfig.json');
    const result = await run(tsc, ['-p', project], { cwd: REPO_ROOT }).then(
      () => '',
      (error: { stdout: string }) => error.stdout,
    );
    expect(result).toBe('');
  });
});
