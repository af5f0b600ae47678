// Face embeddings: aligned 112x112 crops through the recognizer, L2-normalised, compared by cosine.
import ort from 'onnxruntime-node';
import { writeBlob } from './blob.js';
import type { RgbImage } from './image.js';
import type { RecognizerManifest } from './models/registry.js';

export function l2Normalize(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const v of vector) sum += v * v;
  const norm = Math.sqrt(sum);
  return norm > 0 ? vector.map((v) => v / norm) : vector;
}

/** Cosine similarity of two L2-normalised vectors, in [-1, 1]. */
export function cosineSimilarity(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
  return dot;
}

export class FaceEmbedder {
  readonly manifest: RecognizerManifest;
  private readonly session: ort.InferenceSession;

  constructor(session: ort.InferenceSession, manifest: RecognizerManifest) {
    this.session = session;
    this.manifest = manifest;
  }

  get dimension(): number {
    return this.manifest.dimension;
  }

  /** One L2-normalised embedding per aligned crop, up to `maxBatch` crops per network run. */
  async embed(crops: RgbImage[]): Promise<Float32Array[]> {
    const embeddings: Float32Array[] = [];
    for (let start = 0; start < crops.length; start += this.manifest.maxBatch) {
      embeddings.push(...(await this.run(crops.slice(start, start + this.manifest.maxBatch))));
    }
    return embeddings;
  }

  private async run(batch: RgbImage[]): Promise<Float32Array[]> {
    const { width, height } = this.manifest.input;
    const planeSet = 3 * width * height;
    const data = new Float32Array(batch.length * planeSet);
    batch.forEach((crop, i) => writeBlob(data, i * planeSet, crop, width, height, this.manifest.input));
    const input = new ort.Tensor('float32', data, [batch.length, 3, height, width]);
    const results = await this.session.run({ [this.session.inputNames[0]]: input });
    const output = results[this.session.outputNames[0]].data as Float32Array;
    const dim = this.manifest.dimension;
    if (output.length !== batch.length * dim) {
      throw new Error(`recognizer '${this.manifest.name}' returned ${output.length} values for ${batch.length} faces of dimension ${dim}`);
    }
    return batch.map((_, i) => l2Normalize(output.slice(i * dim, (i + 1) * dim)));
  }
}
