// Real photos (../shared/testdata/labels.csv): detection counts and identification with MobileFaceNet.
import { beforeAll, describe, expect, it } from 'vitest';
import { percentile } from '../../bench/common.js';
import { alignToTemplate } from '../../src/engine/align.js';
import type { Face } from '../../src/engine/detect.js';
import { cosineSimilarity } from '../../src/engine/embed.js';
import type { FaceEngine } from '../../src/engine/engine.js';
import { fixturesMissing, labels, loadTestImage, testEngine, type Label } from '../helpers/fixtures.js';

function largest(faces: Face[]): Face {
  return faces.reduce((a, b) => (b.box[2] * b.box[3] > a.box[2] * a.box[3] ? b : a));
}

function stats(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return `n=${values.length} min ${sorted[0].toFixed(3)} p5 ${percentile(values, 0.05).toFixed(3)} mean ${mean.toFixed(3)} p95 ${percentile(values, 0.95).toFixed(3)} max ${sorted.at(-1)!.toFixed(3)}`;
}

describe.skipIf(fixturesMissing)('real photos', () => {
  let engine: FaceEngine;
  const all = fixturesMissing ? [] : labels();
  const of = (folder: string): Label[] => all.filter((l) => l.path.startsWith(`${folder}/`));

  beforeAll(async () => {
    engine = await testEngine();
  });

  async function count(path: string): Promise<number> {
    return (await engine.detect(await loadTestImage(path))).length;
  }

  it('finds exactly one face where faces/ says one, and at least one everywhere in faces/', async () => {
    const wrong: string[] = [];
    for (const label of of('faces')) {
      const n = await count(label.path);
      if (label.faces === 1 ? n !== 1 : n < 1) wrong.push(`${label.path}: ${n}`);
    }
    expect(wrong).toEqual([]);
  });

  it('finds no face in noface/', async () => {
    const found: string[] = [];
    for (const label of of('noface')) {
      const n = await count(label.path);
      if (n !== 0) found.push(`${label.path}: ${n}`);
    }
    expect(found).toEqual([]);
  });

  it('reports multi/ counts, finding most of the labelled faces', async () => {
    const rows: string[] = [];
    let labelled = 0;
    let detected = 0;
    for (const label of of('multi')) {
      const n = await count(label.path);
      rows.push(`${label.path.padEnd(28)} label ${String(label.faces ?? '-').padStart(2)}  found ${n}`);
      expect(n).toBeGreaterThanOrEqual(1);
      if (label.faces !== null) {
        labelled += label.faces;
        detected += Math.min(n, label.faces);
      }
    }
    console.log(`multi/ at score 0.9 (found/labelled ${detected}/${labelled}):\n  ${rows.join('\n  ')}`);
    expect(detected / labelled).toBeGreaterThanOrEqual(0.8);
  });

  it('handles the hard cases as MANIFEST.md describes them', async () => {
    expect(await count('hard/obama2_rgba.png')).toBe(1);
    expect(await count('hard/deepface_p03_webp_named_jpg.jpg')).toBe(1);
    expect(await count('hard/obama_240p.jpg')).toBe(1);
    expect(await count('hard/obama1_lowlight.jpg')).toBe(1);
    // YuNet is not rotation-invariant: a face turned 90° is not found.
    expect(await count('hard/obama1_rot90cw.jpg')).toBe(0);
  });

  it('embeds several faces in one run exactly as one at a time', async () => {
    const image = await loadTestImage('multi/obama_and_biden.jpg');
    const faces = await engine.detect(image);
    expect(faces.length).toBeGreaterThanOrEqual(2);
    const batched = await engine.embedFaces(image, faces);
    for (const [i, face] of faces.entries()) {
      const [single] = await engine.embedder.embed([alignToTemplate(image, face.landmarks)]);
      const maxDiff = single.reduce((m, v, k) => Math.max(m, Math.abs(v - batched[i][k])), 0);
      expect(maxDiff).toBeLessThan(1e-5);
    }
  });

  it('identifies people: leave-one-out 1-NN over faces/ >= 95%, with the similarity distributions', async () => {
    const samples: { identity: string; path: string; embedding: Float32Array }[] = [];
    for (const label of of('faces')) {
      const image = await loadTestImage(label.path);
      const face = largest(await engine.detect(image));
      samples.push({ identity: label.identity, path: label.path, embedding: (await engine.embedFaces(image, [face]))[0] });
    }
    const same: number[] = [];
    const different: number[] = [];
    let trials = 0;
    let correct = 0;
    const misses: string[] = [];
    samples.forEach((probe, i) => {
      let best = { similarity: -Infinity, identity: '' };
      samples.forEach((other, j) => {
        if (i === j) return;
        const similarity = cosineSimilarity(probe.embedding, other.embedding);
        if (j > i) (other.identity === probe.identity ? same : different).push(similarity);
        if (similarity > best.similarity) best = { similarity, identity: other.identity };
      });
      if (!samples.some((o, j) => j !== i && o.identity === probe.identity)) return; // no other photo of this person
      trials++;
      if (best.identity === probe.identity) correct++;
      else misses.push(`${probe.path} -> ${best.identity} (${best.similarity.toFixed(3)})`);
    });
    const threshold = engine.recognizer.defaultThreshold;
    const falseAccepts = different.filter((s) => s >= threshold).length;
    const falseRejects = same.filter((s) => s < threshold).length;
    console.log(
      [
        `leave-one-out 1-NN over faces/: ${correct}/${trials} = ${((100 * correct) / trials).toFixed(1)}%`,
        `same person:      ${stats(same)}`,
        `different people: ${stats(different)}`,
        `at threshold ${threshold}: ${falseRejects}/${same.length} same-person pairs rejected, ${falseAccepts}/${different.length} different-person pairs accepted`,
        ...misses.map((m) => `miss: ${m}`),
      ].join('\n'),
    );
    expect(trials).toBeGreaterThanOrEqual(70);
    expect(correct / trials).toBeGreaterThanOrEqual(0.95);
  });
});
