// The soak's measurements of the service over time: RSS (from /proc) and the JS heap right after
// a full garbage collection, and the event-loop delay since the previous sample.
import WebSocket from 'ws';
import type { ServiceProcess } from '../../test/helpers/service-process.js';
import { ROUTES, type Tally } from './workload.js';

export interface Sample {
  atS: number;
  rssMb: number;
  heapUsedMb: number;
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  answered: number;
}

const INSPECTOR_LINE = 'Debugger listening on ';

/**
 * The service's V8 inspector (it runs with --inspect on a local port): a full garbage collection
 * before each sample, so that RSS and heap are compared at their retained level rather than at
 * random points of the collector's sawtooth.
 */
export class Inspector {
  private nextId = 1;
  private readonly pending = new Map<number, () => void>();

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const { id } = JSON.parse(data.toString()) as { id?: number };
      if (id !== undefined) this.pending.get(id)?.();
    });
  }

  static async connect(service: ServiceProcess): Promise<Inspector> {
    const line = await service.line('the inspector address', (l) => l.startsWith(INSPECTOR_LINE));
    const socket = new WebSocket(line.slice(INSPECTOR_LINE.length).trim());
    await new Promise<void>((resolveOpen, reject) => socket.once('open', () => resolveOpen()).once('error', reject));
    return new Inspector(socket);
  }

  collectGarbage(): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolveCall) => {
      this.pending.set(id, () => {
        this.pending.delete(id);
        resolveCall();
      });
      this.socket.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
    });
  }

  close(): void {
    this.socket.close();
  }
}

/** A gauge's value in Prometheus text. */
function readMetric(text: string, name: string): number {
  const match = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
  return match ? Number(match[1]) : NaN;
}

const round1 = (v: number) => Math.round(v * 10) / 10;

/**
 * The sampler is the only client of /metrics, whose every scrape resets the event-loop histogram:
 * a first scrape reads the delay since the previous sample, then a full collection, RSS, and a
 * second scrape for the heap, which also keeps the forced collection's pause out of the next
 * sample's delay.
 */
export async function sample(service: ServiceProcess, inspector: Inspector, url: string, startedAt: number, tally: Tally): Promise<Sample> {
  const scrape = async () => {
    const started = performance.now();
    const response = await fetch(`${url}/metrics`, { headers: { 'x-api-key': 'soak-sampler' } });
    const text = await response.text();
    tally.add(ROUTES.sampler, { outcome: String(response.status), problem: response.status === 200 ? null : 'expected 200' }, performance.now() - started);
    return text;
  };
  const before = await scrape();
  await inspector.collectGarbage();
  const { rssMb } = service.memory();
  const after = await scrape();
  return {
    atS: Math.round((performance.now() - startedAt) / 1000),
    rssMb: round1(rssMb),
    heapUsedMb: round1(readMetric(after, 'face_recog_nodejs_heap_size_used_bytes') / 1024 / 1024),
    eventLoopP99Ms: round1(readMetric(before, 'face_recog_nodejs_eventloop_lag_p99_seconds') * 1000),
    eventLoopMaxMs: round1(readMetric(before, 'face_recog_nodejs_eventloop_lag_max_seconds') * 1000),
    answered: tally.total,
  };
}
