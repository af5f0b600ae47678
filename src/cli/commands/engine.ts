// Engine commands for people: detect (with an annotated picture), compare two photos, fetch models.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import sharp from 'sharp';
import { engineOptions, loadConfig, type Config } from '../../config.js';
import type { Face } from '../../engine/detect.js';
import { cosineSimilarity } from '../../engine/embed.js';
import { FaceEngine } from '../../engine/engine.js';
import { FaceDetector } from '../../engine/face-detector.js';
import { decodeImage, type RgbImage } from '../../engine/image.js';
import { downloadProgressReporter } from '../../engine/models/progress.js';
import { MODELS, getModel } from '../../engine/models/registry.js';
import { ensureModel, sha256File } from '../../engine/models/store.js';
import { FaceRecogError } from '../../errors.js';
import { clampSimilarity } from '../../server/recognition.js';

/** The configured models, downloaded with a progress bar where missing. */
function modelOptions(config: Config) {
  return { ...engineOptions(config), onProgress: downloadProgressReporter() };
}

async function loadEngine(): Promise<FaceEngine> {
  return FaceEngine.load(modelOptions(loadConfig()));
}

/** The detector alone (DETECTOR with the DETECT_* settings): detecting needs no recognizer model. */
async function loadDetector(): Promise<FaceDetector> {
  return FaceDetector.load(modelOptions(loadConfig()));
}

/** The decoded image file; a file that cannot be read is one clear error, not a stack trace. */
async function readImage(path: string): Promise<RgbImage> {
  const config = loadConfig();
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new FaceRecogError('invalid_request', `cannot read image ${path}: ${reason}`);
  }
  return decodeImage(bytes, { maxBytes: config.limits.maxImageBytes, maxPixels: config.limits.maxImagePixels });
}

const round = (v: number): number => Math.round(v * 100) / 100;

function faceJson(face: Face) {
  return { bbox: face.box.map(round), confidence: face.score, landmarks: face.landmarks.map((p) => p.map(round)) };
}

/** Boxes and the five landmarks drawn over the image, as an SVG composited by sharp. */
async function drawFaces(image: RgbImage, faces: Face[], out: string): Promise<void> {
  const stroke = Math.max(2, Math.round(Math.max(image.width, image.height) / 300));
  const colours = ['#ff3b30', '#34c759', '#0a84ff', '#ffcc00', '#af52de'];
  const shapes = faces.map((f) => {
    const [x, y, w, h] = f.box;
    const dots = f.landmarks.map(([px, py], i) => `<circle cx="${px}" cy="${py}" r="${stroke * 1.5}" fill="${colours[i]}"/>`).join('');
    const label = `<text x="${x}" y="${Math.max(y - stroke * 2, stroke * 8)}" font-family="sans-serif" font-size="${stroke * 8}" fill="#00ff88">${f.score.toFixed(2)}</text>`;
    return `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="#00ff88" stroke-width="${stroke}"/>${dots}${label}`;
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${image.width}" height="${image.height}">${shapes.join('')}</svg>`;
  await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .composite([{ input: Buffer.from(svg) }])
    .toFile(out);
}

async function mostConfidentEmbedding(engine: FaceEngine, path: string): Promise<Float32Array | null> {
  const image = await readImage(path);
  const [face] = await engine.detect(image);
  if (!face) return null;
  return (await engine.embedFaces(image, [face]))[0];
}

export function registerEngineCommands(program: Command): void {
  program
    .command('detect <image>')
    .description('detect faces in an image file and print them as JSON')
    .option('--out <file>', 'write a copy with boxes and landmarks drawn (format from the extension)')
    .action(async (path: string, options: { out?: string }) => {
      const image = await readImage(path);
      const detector = await loadDetector();
      const faces = await detector.detect(image);
      console.log(JSON.stringify({ faces: faces.map(faceJson), count: faces.length }, null, 2));
      if (options.out) {
        await drawFaces(image, faces, options.out);
        console.error(`wrote ${options.out}`);
      }
    });

  program
    .command('compare <a> <b>')
    .description("cosine similarity of the most confident face in each image, and whether it is a match at the recognizer's threshold")
    .option('--threshold <t>', 'match threshold (default: MATCH_THRESHOLD or the recognizer default)', parseFloat)
    .action(async (a: string, b: string, options: { threshold?: number }) => {
      const engine = await loadEngine();
      const threshold = options.threshold ?? loadConfig().matchThreshold ?? engine.recognizer.defaultThreshold;
      const [ea, eb] = [await mostConfidentEmbedding(engine, a), await mostConfidentEmbedding(engine, b)];
      const similarity = ea && eb ? clampSimilarity(cosineSimilarity(ea, eb)) : null;
      const result = {
        similarity,
        matched: similarity !== null && similarity >= threshold,
        threshold,
        face_detected: [ea !== null, eb !== null],
        model: engine.recognizer.name,
      };
      console.log(JSON.stringify(result, null, 2));
    });

  const models = program.command('models').description('model files: list and fetch');

  models
    .command('list')
    .description('the models this build knows, and whether each is in MODELS_DIR')
    .action(async () => {
      const { dir } = loadConfig().models;
      for (const m of Object.values(MODELS)) {
        const present = await ensureModel(m, { dir, offline: true }).then(
          () => 'present',
          () => 'missing',
        );
        console.log(`${m.name.padEnd(20)} ${m.kind.padEnd(10)} ${String(m.bytes).padStart(9)} B  ${present.padEnd(8)} ${m.file}`);
      }
    });

  models
    .command('fetch [names...]')
    .description('download models into MODELS_DIR (default: the configured DETECTOR and RECOGNIZER), verifying sha256')
    .action(async (names: string[]) => {
      const config = loadConfig();
      const wanted = names.length > 0 ? names : [config.models.detector, config.models.recognizer];
      for (const name of wanted) {
        const manifest = getModel(name);
        const path = await ensureModel(manifest, modelOptions(config));
        const sha256 = await sha256File(path);
        if (sha256 !== manifest.sha256) {
          throw new FaceRecogError(
            'model_checksum_mismatch',
            `${path} has sha256 ${sha256}, expected ${manifest.sha256}; delete it and fetch again`,
          );
        }
        console.log(`${name}: ${path} (sha256 verified)`);
      }
    });
}
