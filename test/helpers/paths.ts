// Where the repository and the shared test data are, for tests, benchmarks and tools alike
// (importing these loads nothing else).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TESTDATA_DIR = resolve(process.env.TESTDATA_DIR ?? join(REPO_ROOT, '..', 'shared', 'testdata'));
export const MODELS_DIR = resolve(process.env.MODELS_DIR ?? join(TESTDATA_DIR, 'models'));
