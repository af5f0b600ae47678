// Not a test and not part of `npm run bench`: does a webhook receiver that is down or hangs slow
// recognition? The real service in this process (createService, real engine, a gallery of every
// faces/ photo), cameras on real WebSockets sending the shared clip's frames one by one as the
// singer walks on (each frame after the answer to the one before), every visit on a camera of its
// own so that each raises one "arrived" event, and the webhook pointed at:
//   none     no WEBHOOK_URL (the baseline)
//   up       a receiver in another process answering 204
//   down     a port nothing listens on (every attempt refused, retried with backoff)
//   hanging  a receiver in another process that never answers (every attempt held to its timeout)
// Blocks of each alternate (none up down hanging none ...), each on a fresh service closed after
// it, so that a drift in the machine's speed falls on all alike and no block pays for another's
// retries. Prints and writes bench/results/webhooks.json: per mode, frame round trip (client) and
// latency_ms (service) p50/p95, events raised, and what became of the deliveries.
//   npm run bench:webhooks [-- --quick]
import sharp from 'sharp';
import WebSocket from 'ws';
import { CLIP_VISITOR_FRAMES, decodeClip, embedFacePhotos, galleryOf, type EmbeddedPhoto } from '../test/tracking/helpers/streams.js';
import { testEngine } from '../test/helpers/fixtures.js';
import { startServer, type TestServer } from '../test/server/helpers/server.js';
import { closedPortUrl, delivered, remoteReceiver, webhookCounters } from '../test/server/helpers/webhook-receiver.js';
import { QUICK, latencyOf, machine, round2, writeResult, type Latency } from './common.js';

const MODES = ['none', 'up', 'down', 'hanging'] as const;
type Mode = (typeof MODES)[number];
const ROUNDS = QUICK ? 1 : 3;
const VISITS_PER_BLOCK = QUICK ? 3 : 6;
// Each visit: the singer walking on, long enough for his track to be named (about 11 frames in).
const VISIT_FRAMES = 30;
const CLIP_JPEG_QUALITY = 92;
const SECRET = 'bench webhook secret';
const OUTCOMES = ['delivered', 'failed', 'dropped', 'abandoned'];

interface ModeTimes {
  roundTripMs: number[];
  serviceMs: number[];
  events: number;
  deliveries: Record<string, number>;
}

/** One visit: a new connection on camera `camera`, the frames one by one, each timed. */
async function visit(server: TestServer, camera: string, frames: string[], times: ModeTimes): Promise<void> {
  const socket = new WebSocket(`${server.wsUrl}/ws/realtime?camera=${encodeURIComponent(camera)}`);
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const answers = new Map<string, (message: { latency_ms: number }) => void>();
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString());
    if (message.type === 'event') times.events++;
    else answers.get(message.id)?.(message);
  });
  for (const [i, image] of frames.entries()) {
    const id = `${camera}-${i}`;
    const sentAt = performance.now();
    const answer = await new Promise<{ type?: string; latency_ms: number }>((resolve) => {
      answers.set(id, resolve);
      socket.send(JSON.stringify({ type: 'frame', image, id }));
    });
    if (answer.type !== 'results') throw new Error(`frame ${id} answered ${JSON.stringify(answer).slice(0, 200)}`);
    times.roundTripMs.push(performance.now() - sentAt);
    times.serviceMs.push(answer.latency_ms);
    answers.delete(id);
  }
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.close();
  await closed;
}

async function block(photos: EmbeddedPhoto[], frames: string[], url: string | null, name: string, times: ModeTimes): Promise<void> {
  const env: Record<string, string> = { LOG_LEVEL: 'warn', ...(url ? { WEBHOOK_URL: url, WEBHOOK_SECRET: SECRET } : {}) };
  const server = await startServer({ gallery: galleryOf(photos, () => true), env });
  for (let v = 0; v < VISITS_PER_BLOCK; v++) await visit(server, `${name}-visit-${v}`, frames, times);
  // Not timed: what the sender still holds is delivered or abandoned here.
  await server.close();
  const counters = webhookCounters(await server.service.metrics.registry.metrics());
  for (const outcome of OUTCOMES) times.deliveries[outcome] = (times.deliveries[outcome] ?? 0) + counters[delivered(outcome)];
  times.deliveries.retries = (times.deliveries.retries ?? 0) + counters.face_recog_webhook_retries_total;
}

async function main(): Promise<void> {
  const started = performance.now();
  const photos = await embedFacePhotos(await testEngine());
  const clip = decodeClip().slice(CLIP_VISITOR_FRAMES.first, CLIP_VISITOR_FRAMES.first + VISIT_FRAMES);
  const frames = await Promise.all(
    clip.map(async ({ data, width, height }) =>
      (await sharp(data, { raw: { width, height, channels: 3 } }).jpeg({ quality: CLIP_JPEG_QUALITY }).toBuffer()).toString('base64'),
    ),
  );
  const up = await remoteReceiver('ok');
  const hanging = await remoteReceiver('hang');
  const urls: Record<Mode, string | null> = { none: null, up: up.url, down: await closedPortUrl(), hanging: hanging.url };
  const times = Object.fromEntries(MODES.map((m) => [m, { roundTripMs: [], serviceMs: [], events: 0, deliveries: {} } as ModeTimes])) as Record<Mode, ModeTimes>;
  try {
    // A first block of each, not counted: the engine and the sockets warm up.
    const warmup: ModeTimes = { roundTripMs: [], serviceMs: [], events: 0, deliveries: {} };
    await block(photos, frames, null, 'warmup', warmup);
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of MODES) await block(photos, frames, urls[mode], `${mode}-${round}`, times[mode]);
    }
  } finally {
    up.process.kill();
    hanging.process.kill();
  }

  const summary = Object.fromEntries(
    MODES.map((mode) => {
      const t = times[mode];
      return [mode, { round_trip_ms: latencyOf(t.roundTripMs), service_latency_ms: latencyOf(t.serviceMs), events: t.events, deliveries: t.deliveries }];
    }),
  ) as Record<Mode, { round_trip_ms: Latency; service_latency_ms: Latency; events: number; deliveries: Record<string, number> }>;
  const ratio = (mode: Mode, q: 'p50' | 'p95') => round2(summary[mode].round_trip_ms[q] / summary.up.round_trip_ms[q]);
  const result = {
    machine: machine(),
    settings: { rounds: ROUNDS, visits_per_block: VISITS_PER_BLOCK, frames_per_visit: VISIT_FRAMES, quick: QUICK },
    modes: summary,
    round_trip_vs_up: Object.fromEntries(MODES.map((mode) => [mode, { p50: ratio(mode, 'p50'), p95: ratio(mode, 'p95') }])),
  };
  for (const mode of MODES) {
    const { round_trip_ms: rt, service_latency_ms: sv, events } = summary[mode];
    console.log(
      `${mode.padEnd(8)} round trip p50 ${rt.p50} ms p95 ${rt.p95} ms (x${ratio(mode, 'p50')} / x${ratio(mode, 'p95')} of up), service p50 ${sv.p50} p95 ${sv.p95}, ${rt.n} frames, ${events} events`,
    );
  }
  console.log(`wrote ${writeResult('webhooks', result)}; took ${Math.round((performance.now() - started) / 1000)} s`);
}

await main();
