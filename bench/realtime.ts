// WebSocket /ws/realtime as cameras use it: each connection streams frames at a camera's pace
// (30 frames/s) whether or not answers have come back; the service answers the newest waiting
// frame and reports the ones it skipped as dropped. Results per second is what the cameras
// really get; dropped per second is the rest of what they sent.
import WebSocket from 'ws';
import { IDENTITY_RULE } from '../src/server/tracking/identity.js';
import { percentile, round2 } from './common.js';
import { QUERY_IDENTITY } from './inputs.js';

const CAMERA_FPS = 30;
const OPEN_TIMEOUT_MS = 10_000;
const DRAIN_MS = 2_000;

export interface RealtimeRate {
  connections: number;
  /** Frames sent per second, over all connections. */
  sentPerS: number;
  /** Answers ({type: "results"}) per second, over all connections. */
  resultsPerS: number;
  droppedPerS: number;
  /** latency_ms as the service reports it (frame received to answer sent), median. */
  latencyP50Ms: number;
  seconds: number;
}

interface Counts {
  sent: number;
  results: number;
  dropped: number;
  latencies: number[];
}

async function connect(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url);
  const timer = setTimeout(() => socket.terminate(), OPEN_TIMEOUT_MS);
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`WebSocket ${url} closed before opening`)));
  });
  clearTimeout(timer);
  return socket;
}

function listen(socket: WebSocket, counts: Counts, window: { open: boolean }, fail: (error: Error) => void): void {
  let answered = 0;
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString()) as { type: string; ids?: unknown[]; latency_ms?: number; faces?: { visitor_id: string | null }[] };
    if (message.type === 'error') fail(new Error(`realtime error: ${data.toString().slice(0, 300)}`));
    // The connection's face is named by its track's frames: from the rule's last vote on.
    const named = message.type === 'results' && ++answered >= IDENTITY_RULE.votes;
    if (named && !message.faces?.[0]?.visitor_id?.startsWith(`${QUERY_IDENTITY}-`)) fail(new Error(`realtime answer without the expected visitor: ${data.toString().slice(0, 300)}`));
    if (!window.open) return;
    if (message.type === 'results') {
      counts.results++;
      counts.latencies.push(message.latency_ms ?? NaN);
    } else if (message.type === 'dropped') {
      counts.dropped += message.ids?.length ?? 0;
    }
  });
}

/** `connections` sockets streaming the frame at 30 frames/s each for `seconds`. */
export async function realtimeRate(url: string, frameBase64: string, connections: number, seconds: number): Promise<RealtimeRate> {
  const sockets = await Promise.all(Array.from({ length: connections }, () => connect(url)));
  const counts: Counts = { sent: 0, results: 0, dropped: 0, latencies: [] };
  const window = { open: true };
  let failure: Error | null = null;
  for (const socket of sockets) listen(socket, counts, window, (error) => (failure ??= error));
  let id = 0;
  const timers = sockets.map((socket) =>
    setInterval(() => {
      socket.send(JSON.stringify({ type: 'frame', image: frameBase64, id: ++id }));
      counts.sent++;
    }, 1000 / CAMERA_FPS),
  );
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  window.open = false;
  timers.forEach(clearInterval);
  // Let the frames in progress finish before closing, so the next measurement starts idle.
  await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
  await Promise.all(
    sockets.map(async (socket) => {
      const closed = new Promise((resolve) => socket.once('close', resolve));
      socket.close();
      await closed;
    }),
  );
  if (failure) throw failure;
  const perS = (n: number) => round2(n / seconds);
  return {
    connections,
    sentPerS: perS(counts.sent),
    resultsPerS: perS(counts.results),
    droppedPerS: perS(counts.dropped),
    latencyP50Ms: round2(percentile(counts.latencies, 0.5)),
    seconds,
  };
}
