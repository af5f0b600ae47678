// Loads a verified model file into an onnxruntime-node session.
import { readFile } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import { editIoShapes } from './onnx-shapes.js';
import type { ModelManifest } from './registry.js';
import { verifyModelBytes } from './store.js';

export interface SessionOptions {
  /** Threads one inference may use (onnxruntime intra-op). Default: all cores. */
  intraOpThreads?: number;
}

// onnxruntime's warning level would print a line per output whenever a symbolic dim resolves.
const LOG_ERRORS_ONLY = 3;

/**
 * Every session has its own intra-op thread pool, whose threads by default keep spinning for a
 * while after each run. The detector, the recognizer and the gallery search run one after another
 * on the same cores, so each would find the previous one's threads still spinning: on 2 cores that
 * doubled the gallery search and slowed detect and embed by a third. So the threads stop spinning
 * as a run ends; within a run they spin, since sleeping between YuNet's many small parallel layers
 * cost a wake-up at each (YuNet's 640x640 forward 4.9 ms with no spinning at all, 3.6 ms so, and
 * less CPU per forward: 9.0 against 9.5 ms).
 */
export const SPIN_WITHIN_RUNS = { session: { intra_op: { allow_spinning: '1' }, force_spinning_stop: '1' } };

export async function createSession(manifest: ModelManifest, path: string, options: SessionOptions = {}): Promise<ort.InferenceSession> {
  const bytes = await readFile(path);
  verifyModelBytes(manifest, bytes, path);
  const model = manifest.shapeEdits ? editIoShapes(bytes, manifest.shapeEdits) : bytes;
  return ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: options.intraOpThreads ?? 0,
    interOpNumThreads: 1,
    logSeverityLevel: LOG_ERRORS_ONLY,
    extra: SPIN_WITHIN_RUNS,
  });
}
