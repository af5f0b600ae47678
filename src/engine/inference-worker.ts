// One inference worker thread (see worker-pool.ts): its own FaceEngines, its own onnxruntime
// sessions. It decodes, detects and embeds the encoded images it is sent, so the decoded pixels
// are made and dropped here and never cross a thread; only faces and embeddings go back. With
// intraOpThreads above one it holds a second engine of one thread per inference, for the images
// the pool runs beside others (worker-pool.ts, "wide").
import { parentPort, workerData } from 'node:worker_threads';
import { FaceEngine, type EngineOptions } from './engine.js';
import { toWire, type WorkerReply, type WorkerRequest } from './worker-protocol.js';

const port = parentPort!;

async function answer(engines: Engines, request: WorkerRequest): Promise<WorkerReply> {
  const engine = request.wide ? engines.wide : engines.narrow;
  if (request.kind === 'analyze') {
    const analysis = await engine.analyzeImage(request.bytes, request.options);
    return { id: request.id, analysis };
  }
  return { id: request.id, enrolment: await engine.enrolImage(request.bytes, request.limits) };
}

/** Embeddings go back moved, not copied: each owns its buffer. */
function transferList(reply: WorkerReply): ArrayBuffer[] {
  if ('analysis' in reply) return reply.analysis.embeddings.map((e) => e.buffer as ArrayBuffer);
  if ('enrolment' in reply && reply.enrolment.embedding) return [reply.enrolment.embedding.buffer as ArrayBuffer];
  return [];
}

interface Engines {
  wide: FaceEngine;
  narrow: FaceEngine;
}

async function load(options: EngineOptions): Promise<Engines> {
  const wide = await FaceEngine.load(options);
  return { wide, narrow: options.intraOpThreads === 1 ? wide : await FaceEngine.load({ ...options, intraOpThreads: 1 }) };
}

let engines: Engines;
try {
  engines = await load(workerData as EngineOptions);
} catch (error) {
  port.postMessage({ failed: toWire(error) });
  process.exit(1);
}
port.on('message', (request: WorkerRequest) => {
  answer(engines, request).then(
    (reply) => port.postMessage(reply, transferList(reply)),
    (error: unknown) => port.postMessage({ id: request.id, error: toWire(error) }),
  );
});
port.postMessage({ ready: true });
