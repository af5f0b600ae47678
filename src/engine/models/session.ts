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
 * Every session has its own intra-op thread pool, whose threads by default spin for a while after
 * each run. The detector, the recognizer and the gallery search run one after another on the same
 * cores, so each would find the previous one's threads still spinning: on 2 cores that doubled
 * the gallery search and slowed detect and embed by a third. Idle threads sleep instead.
 */
export const NO_SPINNING = { session: { intra_op: { allow_spinning: '0' } } };

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
    extra: NO_SPINNING,
  });
}
