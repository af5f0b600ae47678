// Inference off the event loop: a fixed set of worker threads, each with its own FaceEngine
// (inference-worker.ts). onnxruntime's session.run is synchronous on the thread that calls it (10
// to 20 ms at a time); in workers, the event loop keeps answering /health, /metrics and sockets
// while both cores infer. Each task is one encoded image, moved to the worker (transferred, not
// copied); it is decoded there, so pixels exist only inside the worker running its task.
// sharp and onnxruntime-node are native addons loaded once per thread; both are context-aware.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
// Kept loaded by the main thread: under glibc, a worker that exits would otherwise unload libvips
// while another thread still uses it (sharp's documentation, "worker threads").
import 'sharp';
import { FaceRecogError } from '../errors.js';
import type { AnalyzeOptions, EnrolmentAnalysis, ImageAnalysis, InferenceEngine, RecognizerInfo } from './analysis.js';
import type { EngineOptions } from './engine.js';
import type { ImageLimits } from './image.js';
import { getDetector, getRecognizer } from './models/registry.js';
import { ensureModel } from './models/store.js';
import { fromWire, type WireError, type WorkerReply, type WorkerRequest, type WorkerStatus } from './worker-protocol.js';

/**
 * intraOpThreads is what an image that the pool runs alone gets; images run beside others get one
 * thread each. Two threads per inference cut one image's latency, but cost a fifth more CPU per
 * image, which the cores no longer have to spare once every worker is busy.
 */
export interface PoolOptions extends EngineOptions {
  /** Worker threads, each with its own sessions. */
  workers: number;
  /**
   * Tasks a worker holds at once. With two, the next image is decoded (by sharp, on libuv's
   * threads) while the worker's thread runs the current one's inference.
   */
  tasksPerWorker: number;
}

type Job = { kind: 'analyze'; bytes: Uint8Array; options: AnalyzeOptions } | { kind: 'enrol'; bytes: Uint8Array; limits: ImageLimits };

interface Task {
  job: Job;
  resolve: (reply: WorkerReply) => void;
  reject: (error: Error) => void;
}

/**
 * The worker's entry is this module's sibling: compiled JavaScript under `npm start`, TypeScript
 * under tsx and vitest, which the worker can only load once tsx's loader is registered in it
 * (a worker does not inherit the loader of the thread that starts it). An eval'd bootstrap does
 * both, so no `--import` flag has to survive the test runner's own process options. It uses only
 * dynamic import(), which works whether the inherited options make eval'd code CommonJS or a
 * module (`--input-type=module`).
 */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_ENTRY = new URL(`./inference-worker${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url).href;
const BOOTSTRAP = `
import('node:worker_threads').then(async ({ workerData }) => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.entry);
});
`;

function tsxLoader(): string | null {
  return FROM_SOURCE ? new URL(`file://${createRequire(import.meta.url).resolve('tsx/esm/api')}`).href : null;
}

/** The bytes as a buffer that can be moved to another thread, copying only when they share one. */
function movable(bytes: Uint8Array): { bytes: Uint8Array; transfer: ArrayBuffer[] } {
  const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
  const own = owned ? bytes : new Uint8Array(bytes);
  return { bytes: own, transfer: [own.buffer as ArrayBuffer] };
}

class PoolWorker {
  readonly running = new Map<number, Task>();
  private drained: (() => void)[] = [];

  private constructor(readonly thread: Worker) {}

  /** A worker with its models loaded, or the reason it could not load them. */
  static start(engineOptions: Omit<EngineOptions, 'onProgress'>, onExit: (worker: PoolWorker, reason: string) => void): Promise<PoolWorker> {
    const thread = new Worker(BOOTSTRAP, { eval: true, workerData: { ...engineOptions, tsx: tsxLoader(), entry: WORKER_ENTRY } });
    const worker = new PoolWorker(thread);
    return new Promise((resolve, reject) => {
      let ready = false;
      let crash: Error | undefined;
      thread.on('message', (message: WorkerStatus | WorkerReply) => {
        if ('ready' in message) {
          ready = true;
          resolve(worker);
        } else if ('failed' in message) reject(fromWire(message.failed));
        else worker.settle(message);
      });
      thread.on('error', (error) => {
        crash = error;
        if (!ready) reject(error);
      });
      thread.on('exit', (code) => {
        if (!ready) reject(crash ?? new Error(`the inference worker exited with code ${code} while loading its models`));
        else onExit(worker, crash?.message ?? `exit code ${code}`);
      });
    });
  }

  submit(id: number, task: Task, wide: boolean): void {
    this.running.set(id, task);
    const { bytes, transfer } = movable(task.job.bytes);
    const request: WorkerRequest = { ...task.job, id, wide, bytes };
    this.thread.postMessage(request, transfer);
  }

  /** Fails every task it holds (the thread is gone). */
  abandon(error: Error): void {
    for (const task of this.running.values()) task.reject(error);
    this.running.clear();
    this.notifyDrained();
  }

  /**
   * Ends the thread once its tasks are done: terminating it inside a sharp call could bring the
   * whole process down (sharp's documentation, worker threads).
   */
  async end(): Promise<void> {
    if (this.running.size > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
    await this.thread.terminate();
  }

  private settle(reply: WorkerReply): void {
    const task = this.running.get(reply.id);
    if (!task) return;
    this.running.delete(reply.id);
    if ('error' in reply) task.reject(fromWire(reply.error as WireError));
    else task.resolve(reply);
    this.notifyDrained();
  }

  private notifyDrained(): void {
    if (this.running.size === 0) for (const resolve of this.drained.splice(0)) resolve();
  }
}

export class EnginePool implements InferenceEngine {
  readonly detectorName: string;
  readonly recognizer: RecognizerInfo;
  private readonly options: PoolOptions;
  private readonly workers: PoolWorker[];
  private readonly waiting: Task[] = [];
  private nextId = 1;
  private closing = false;
  /** Why the last replacement of a crashed worker failed; new tasks are refused while no worker is left. */
  private replacementError: Error | null = null;

  private constructor(options: PoolOptions) {
    const recognizer = getRecognizer(options.recognizer);
    this.options = options;
    this.detectorName = getDetector(options.detector).name;
    this.recognizer = { name: recognizer.name, dimension: recognizer.dimension, defaultThreshold: recognizer.defaultThreshold };
    this.workers = [];
  }

  /** Downloads missing models here (with progress), then starts the workers, which load them from disk. */
  static async start(options: PoolOptions): Promise<EnginePool> {
    await Promise.all([ensureModel(getDetector(options.detector), options), ensureModel(getRecognizer(options.recognizer), options)]);
    const pool = new EnginePool(options);
    const started = await Promise.allSettled(Array.from({ length: options.workers }, () => pool.startWorker()));
    const failure = started.find((s) => s.status === 'rejected');
    if (failure) {
      await pool.close();
      throw failure.reason;
    }
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  /** Tasks held by workers or waiting for one. */
  get pending(): number {
    return this.waiting.length + this.workers.reduce((sum, w) => sum + w.running.size, 0);
  }

  async analyzeImage(bytes: Uint8Array, options: AnalyzeOptions): Promise<ImageAnalysis> {
    const reply = await this.submit({ kind: 'analyze', bytes, options });
    if (!('analysis' in reply)) throw new Error('inference worker answered an analysis with something else');
    return reply.analysis;
  }

  async enrolImage(bytes: Uint8Array, limits: ImageLimits): Promise<EnrolmentAnalysis> {
    const reply = await this.submit({ kind: 'enrol', bytes, limits });
    if (!('enrolment' in reply)) throw new Error('inference worker answered an enrolment with something else');
    return reply.enrolment;
  }

  /** Ends every worker once the tasks they hold are done; tasks not yet handed to one fail with `not_ready`. */
  async close(): Promise<void> {
    this.closing = true;
    for (const task of this.waiting.splice(0)) task.reject(stopped());
    await Promise.all(this.workers.splice(0).map((w) => w.end()));
  }

  private submit(job: Job): Promise<WorkerReply> {
    if (this.closing) return Promise.reject(stopped());
    if (this.workers.length === 0 && this.replacementError) {
      return Promise.reject(new FaceRecogError('internal', `no inference worker is running: ${this.replacementError.message}`));
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  /** Hands waiting tasks to the least busy workers that have room. */
  private dispatch(): void {
    while (this.waiting.length > 0) {
      const worker = this.workers.reduce<PoolWorker | null>((best, w) => (w.running.size < (best?.running.size ?? this.options.tasksPerWorker) ? w : best), null);
      if (!worker) return;
      const task = this.waiting.shift()!;
      const id = this.nextId++;
      const wide = this.pending === 0;
      const settle = () => queueMicrotask(() => this.dispatch());
      worker.submit(id, {
        job: task.job,
        resolve: (reply) => {
          task.resolve(reply);
          settle();
        },
        reject: (error) => {
          task.reject(error);
          settle();
        },
      }, wide);
    }
  }

  private async startWorker(): Promise<void> {
    const { onProgress: _, ...engineOptions } = this.options;
    const worker = await PoolWorker.start({ ...engineOptions, offline: true }, (w, reason) => this.replace(w, reason));
    if (this.closing) return void (await worker.end());
    this.workers.push(worker);
    this.dispatch();
  }

  /** A worker that crashed: its tasks fail, a new one takes its place. */
  private replace(worker: PoolWorker, reason: string): void {
    worker.abandon(new FaceRecogError('internal', `an inference worker stopped (${reason}); the image was not analysed`));
    const index = this.workers.indexOf(worker);
    if (index < 0 || this.closing) return;
    this.workers.splice(index, 1);
    this.startWorker().then(
      () => (this.replacementError = null),
      (error: Error) => {
        this.replacementError = error;
        if (this.workers.length === 0) for (const task of this.waiting.splice(0)) task.reject(new FaceRecogError('internal', `no inference worker is running: ${error.message}`));
      },
    );
  }
}

function stopped(): FaceRecogError {
  return new FaceRecogError('not_ready', 'the inference workers are stopping; retry shortly', { retryAfterS: 1 });
}
