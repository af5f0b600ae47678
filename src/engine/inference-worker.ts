// One inference worker thread (see worker-pool.ts): its own FaceEngine, its own onnxruntime
// sessions. It decodes, detects and embeds the encoded images it is sent, so the decoded pixels
// are made and dropped here and never cross a thread; only faces and embeddings go back.
import { parentPort, workerData } from 'node:worker_threads';
import { FaceEngine, type EngineOptions } from './engine.js';
import { toWire, type WorkerReply, type WorkerRequest } from './worker-protocol.js';

const port = parentPort!;

async function answer(engine: FaceEngine, request: WorkerRequest): Promise<WorkerReply> {
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

let engine: FaceEngine;
try {
  engine = await FaceEngine.load(workerData as EngineOptions);
} catch (error) {
  port.postMessage({ failed: toWire(error) });
  process.exit(1);
}
port.on('message', (request: WorkerRequest) => {
  answer(engine, request).then(
    (reply) => port.postMessage(reply, transferList(reply)),
    (error: unknown) => port.postMessage({ id: request.id, error: toWire(error) }),
  );
});
port.postMessage({ ready: true });
