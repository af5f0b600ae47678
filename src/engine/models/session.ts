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
  });
}
