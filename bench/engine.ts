// Engine stages on this machine: decode, detect (the default, every face size, next to the single
// 640 pass of parity mode, and the raw onnxruntime inference), align, embed, for a 640x480 and a
// 1920x1080 JPEG, next to OpenCV DNN's YuNet forward on the same 640x640 blob (in alternating blocks,
// so that both see the same machine).
// `npm run bench:engine [-- --quick]` prints a table and writes bench/results/engine.json.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { alignToTemplate } from '../src/engine/align.js';
import { FaceEngine } from '../src/engine/engine.js';
import { decodeImage, type RgbImage } from '../src/engine/image.js';
import { passInputSizes } from '../src/engine/pyramid.js';
import { MODELS_DIR, QUICK, RECOGNIZER, REPO_ROOT, machine, median, round2, timeInterleaved, timeRuns, writeResult } from './common.js';
import { jpegAt } from './inputs.js';

const RUNS = QUICK ? 15 : 60;
/** The parity mode's pass (`detect_size: 640`), which the default detection is compared with. */
const SINGLE_PASS = 640;

/** What the service does to a one-face image, in this process: decode, detect, embed the first face. */
export function inProcessPipeline(engine: FaceEngine, jpeg: Buffer): () => Promise<unknown> {
  return async () => {
    const image = await decodeImage(jpeg);
    const faces = await engine.detect(image);
    return engine.embedFaces(image, faces.slice(0, 1));
  };
}

async function stages(engine: FaceEngine, jpeg: Buffer) {
  const image = await decodeImage(jpeg);
  const [face] = await engine.detect(image);
  if (!face) throw new Error('benchmark image has no face');
  const aligned = alignToTemplate(image, face.landmarks);
  const detectInput = engine.detector.makeBlob(
    await (async (): Promise<RgbImage> => {
      const scale = engine.detectDefaults.detectSize / Math.max(image.width, image.height);
      const { resizeImage } = await import('../src/engine/image.js');
      return resizeImage(image, Math.round(image.width * scale), Math.round(image.height * scale));
    })(),
  );
  // In turn, so that their ratios (the default's extra passes, the whole call's overhead over the
  // network, the whole pipeline over its stages) are not machine drift.
  const { decode, detect, single, ortRaw, align, embed, pipeline } = await timeInterleaved(RUNS, {
    decode: () => decodeImage(jpeg),
    detect: () => engine.detect(image),
    single: () => engine.detect(image, { detectSize: SINGLE_PASS }),
    ortRaw: () => engine.detector.forward(detectInput),
    align: async () => alignToTemplate(image, face.landmarks),
    embed: () => engine.embedder.embed([aligned]),
    pipeline: inProcessPipeline(engine, jpeg),
  });
  return {
    size: `${image.width}x${image.height}`,
    detect_input: detectInput.dims.slice(2).reverse().join('x'),
    decode_ms: round2(median(decode)),
    detect_passes: passInputSizes(image.width, image.height, engine.detectDefaults.detectSize).map((p) => `${p.width}x${p.height}`),
    detect_ms: round2(median(detect)),
    detect_single_640_ms: round2(median(single)),
    detect_over_single: round2(median(detect) / median(single)),
    ort_yunet_raw_ms: round2(median(ortRaw)),
    detect_over_raw: round2(median(single) / median(ortRaw)),
    align_ms: round2(median(align)),
    embed_ms: round2(median(embed)),
    decode_detect_embed_ms: round2(median(pipeline)),
  };
}

/** Runs per block when onnxruntime and OpenCV alternate (OpenCV in its own process). */
const FORWARD_BLOCK = 10;

/** An OpenCV DNN process holding YuNet and the blob (opencv_yunet.py): times a block of forwards on request. */
async function startOpencv(blobPath: string, height: number, width: number) {
  const child = spawn('/usr/bin/python3', [join(REPO_ROOT, 'bench', 'opencv_yunet.py'), join(MODELS_DIR, 'face_detection_yunet_2023mar.onnx'), blobPath, String(height), String(width)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`opencv_yunet.py exited with ${code}: ${stderr.trim().split('\n').at(-1) ?? ''}`);
  });
  exited.catch(() => undefined);
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async block(runs: number): Promise<{ times_ms: number[]; opencv: string }> {
      child.stdin.write(`${runs}\n`);
      const line = await Promise.race([lines.next(), exited]);
      return JSON.parse(line.value as string) as { times_ms: number[]; opencv: string };
    },
    close: () => child.kill(),
  };
}

/** YuNet's forward on one 640x640 blob by onnxruntime (this process) and OpenCV DNN, in alternating blocks. */
async function opencvForward(engine: FaceEngine, image: RgbImage): Promise<{ ort_ms: number; opencv_ms: number | null; opencv: string | null }> {
  const blob = engine.detector.makeBlob(image); // 640x640 input: the file's declared size
  const forward = () => engine.detector.forward(blob);
  const blobPath = join(tmpdir(), `face-recog-bench-blob-${process.pid}.f32`);
  const data = blob.data as Float32Array;
  writeFileSync(blobPath, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const ort: number[] = [];
  const opencv: number[] = [];
  let version: string | null = null;
  let cv: Awaited<ReturnType<typeof startOpencv>> | null = null;
  try {
    cv = await startOpencv(blobPath, blob.dims[2], blob.dims[3]);
    for (let done = 0; done < RUNS; done += FORWARD_BLOCK) {
      ort.push(...(await timeRuns(FORWARD_BLOCK, forward, 1)));
      const block = await cv.block(FORWARD_BLOCK);
      opencv.push(...block.times_ms);
      version = block.opencv;
    }
    return { ort_ms: round2(median(ort)), opencv_ms: round2(median(opencv)), opencv: version };
  } catch (error) {
    console.error(`OpenCV DNN not measured (python3-opencv missing?): ${(error as Error).message.split('\n')[0]}`);
    return { ort_ms: round2(median(ort.length ? ort : await timeRuns(RUNS, forward))), opencv_ms: null, opencv: null };
  } finally {
    cv?.close();
    rmSync(blobPath, { force: true });
  }
}

export async function benchEngine() {
  const engine = await FaceEngine.load({ dir: MODELS_DIR, offline: true, detector: 'yunet-2023mar', recognizer: RECOGNIZER });
  const small = await stages(engine, await jpegAt(640, 480));
  const large = await stages(engine, await jpegAt(1920, 1080));
  const square = await decodeImage(await jpegAt(640, 640));
  const opencv = await opencvForward(engine, square);
  return {
    machine: machine(),
    recognizer: RECOGNIZER,
    runs: RUNS,
    jpeg_640x480: small,
    jpeg_1920x1080: large,
    yunet_640x640_blob: { ...opencv, ort_over_opencv: opencv.opencv_ms ? round2(opencv.ort_ms / opencv.opencv_ms) : null },
  };
}

export type EngineResult = Awaited<ReturnType<typeof benchEngine>>;

export function printEngine(r: EngineResult): void {
  const rows = [r.jpeg_640x480, r.jpeg_1920x1080];
  console.log(`engine stages, median ms over ${r.runs} runs (${r.machine.cpus} x ${r.machine.model}, recognizer ${r.recognizer})`);
  console.table(
    Object.fromEntries(
      rows.map((s) => [
        `JPEG ${s.size}`,
        {
          decode: s.decode_ms,
          'detect passes': s.detect_passes.join('+'),
          'detect default': s.detect_ms,
          'detect single 640': s.detect_single_640_ms,
          'default/single': s.detect_over_single,
          'ORT YuNet raw': s.ort_yunet_raw_ms,
          'single/raw': s.detect_over_raw,
          align: s.align_ms,
          embed: s.embed_ms,
          'decode+detect+embed': s.decode_detect_embed_ms,
        },
      ]),
    ),
  );
  const b = r.yunet_640x640_blob;
  console.log(
    `YuNet forward on the same 640x640 blob: onnxruntime ${b.ort_ms} ms, OpenCV ${b.opencv ?? '-'} DNN ${b.opencv_ms ?? 'n/a'} ms` +
      (b.ort_over_opencv ? ` (ratio ${b.ort_over_opencv})` : ''),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await benchEngine();
  printEngine(result);
  console.log(`wrote ${writeResult('engine', result)}`);
}
