// How inference is best spread over this machine's cores: the engine on the main thread next to
// worker pools of several shapes (workers x onnxruntime threads x tasks held per worker), each
// given the 640x480 one-face JPEG by 1, 4 and 16 concurrent callers, in process (no HTTP). Rounds
// alternate the shapes, so that the machine's drift falls on all alike. Per shape: one-caller
// latency (median ms), images/s at 4 and 16 callers, and the event loop's delay p99 at 16.
// `npx tsx bench/workers.ts [--quick]` prints a table and writes bench/results/workers.json.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { InferenceEngine } from '../src/engine/analysis.js';
import { FaceEngine } from '../src/engine/engine.js';
import { DEFAULT_IMAGE_LIMITS } from '../src/engine/image.js';
import { EnginePool } from '../src/engine/worker-pool.js';
import { MODELS_DIR, QUICK, RECOGNIZER, machine, median, round2, writeResult } from './common.js';
import { jpegAt } from './inputs.js';

const ROUNDS = QUICK ? 1 : 3;
const LATENCY_RUNS = QUICK ? 10 : 30;
const THROUGHPUT_SECONDS = QUICK ? 1 : 3;
const CALLERS = [4, 16];

interface Shape {
  name: string;
  workers: number;
  threads: number;
  tasksPerWorker: number;
}

// Pools with threads 2 give an image run alone two onnxruntime threads, and one each to images
// run beside others (worker-pool.ts).
const SHAPES: Shape[] = [
  { name: 'main thread, 2 threads', workers: 0, threads: 2, tasksPerWorker: 1 },
  { name: '1 worker, 2 threads alone, 2 tasks', workers: 1, threads: 2, tasksPerWorker: 2 },
  { name: '2 workers x 1 thread', workers: 2, threads: 1, tasksPerWorker: 1 },
  { name: '2 workers x 1 thread, 2 tasks', workers: 2, threads: 1, tasksPerWorker: 2 },
  { name: '2 workers, 2 threads alone', workers: 2, threads: 2, tasksPerWorker: 1 },
  { name: '2 workers, 2 threads alone, 2 tasks', workers: 2, threads: 2, tasksPerWorker: 2 },
];

async function load(shape: Shape): Promise<InferenceEngine> {
  const options = { dir: MODELS_DIR, offline: true, detector: 'yunet-2023mar', recognizer: RECOGNIZER, intraOpThreads: shape.threads };
  if (shape.workers === 0) return FaceEngine.load(options);
  return EnginePool.start({ ...options, workers: shape.workers, tasksPerWorker: shape.tasksPerWorker });
}

function analyze(engine: InferenceEngine, jpeg: Buffer): Promise<unknown> {
  return engine.analyzeImage(new Uint8Array(jpeg), { request: {}, maxFaces: 1, limits: DEFAULT_IMAGE_LIMITS });
}

async function latencyMs(engine: InferenceEngine, jpeg: Buffer): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < LATENCY_RUNS + 3; i++) {
    const started = performance.now();
    await analyze(engine, jpeg);
    if (i >= 3) times.push(performance.now() - started);
  }
  return median(times);
}

/** Images per second with `callers` concurrent callers, and the event loop's delay p99 meanwhile. */
async function throughput(engine: InferenceEngine, jpeg: Buffer, callers: number): Promise<{ perS: number; loopP99Ms: number }> {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  let done = 0;
  const end = performance.now() + THROUGHPUT_SECONDS * 1000;
  loop.enable();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < end) {
        await analyze(engine, jpeg);
        done++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  loop.disable();
  return { perS: done / seconds, loopP99Ms: loop.percentile(99) / 1e6 };
}

async function main(): Promise<void> {
  const jpeg = await jpegAt(640, 480);
  const engines = new Map<Shape, InferenceEngine>();
  for (const shape of SHAPES) engines.set(shape, await load(shape));
  const samples = new Map(SHAPES.map((s) => [s, { latency: [] as number[], c4: [] as number[], c16: [] as number[], loop16: [] as number[] }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const shape of SHAPES) {
      const engine = engines.get(shape)!;
      const sample = samples.get(shape)!;
      sample.latency.push(await latencyMs(engine, jpeg));
      for (const callers of CALLERS) {
        const { perS, loopP99Ms } = await throughput(engine, jpeg, callers);
        sample[callers === 4 ? 'c4' : 'c16'].push(perS);
        if (callers === 16) sample.loop16.push(loopP99Ms);
      }
      console.log(`round ${round + 1}: ${shape.name} done`);
    }
  }
  const rows = SHAPES.map((shape) => {
    const s = samples.get(shape)!;
    const latency = median(s.latency);
    const c16 = median(s.c16);
    return {
      shape: shape.name,
      latency_ms: round2(latency),
      c1_per_s: round2(1000 / latency),
      c4_per_s: round2(median(s.c4)),
      c16_per_s: round2(c16),
      c16_x_latency: round2((c16 * latency) / 1000),
      loop_p99_ms_c16: round2(median(s.loop16)),
    };
  });
  console.table(rows);
  for (const engine of engines.values()) if (engine instanceof EnginePool) await engine.close();
  console.log(`wrote ${writeResult('workers', { machine: machine(), recognizer: RECOGNIZER, rounds: ROUNDS, rows })}`);
}

await main();
