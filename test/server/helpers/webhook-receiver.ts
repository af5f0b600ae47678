// Webhook receivers on local sockets, for the tests and the bench: one in this process that keeps
// what it gets and answers as told, one in a child process (its work is not the caller's), and a
// port nothing listens on. The signature is checked as the README tells receivers to.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  body: string;
  signature: string | undefined;
  delivery: string | undefined;
  contentType: string | undefined;
}

/** The receiver's side, as the README shows it: HMAC of the raw body, compared in constant time. */
export function signatureValid(body: string, header: string | undefined, secret: string): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A local HTTP receiver; `answer` decides each request's status, or 'hang' to never answer. */
export class Receiver {
  readonly received: Received[] = [];
  private readonly server: Server;
  private readonly waiters: { count: number; resolve: () => void }[] = [];
  private readonly held: ServerResponse[] = [];
  answer: (request: Received, attempt: number) => number | 'hang' = () => 204;

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(): Promise<Receiver> {
    const receiver = new Receiver(createServer((req, res) => void receiver.handle(req, res)));
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/face-recog`;
  }

  /** Resolves once `count` requests have arrived. */
  requests(count: number): Promise<void> {
    if (this.received.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  attemptsOf(delivery: string | undefined): number {
    return this.received.filter((r) => r.delivery === delivery).length;
  }

  /** Answers every request held so far with `status`. */
  release(status: number): void {
    for (const res of this.held.splice(0)) res.writeHead(status).end();
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const request: Received = {
      body: Buffer.concat(chunks).toString('utf8'),
      signature: req.headers['x-face-recog-signature'] as string | undefined,
      delivery: req.headers['x-face-recog-delivery'] as string | undefined,
      contentType: req.headers['content-type'],
    };
    this.received.push(request);
    const status = this.answer(request, this.attemptsOf(request.delivery));
    for (const waiter of this.waiters.filter((w) => this.received.length >= w.count)) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    if (status === 'hang') this.held.push(res);
    else res.writeHead(status).end();
  }
}

/** A port nothing listens on: a receiver that is down. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}/hooks`;
}

/**
 * A receiver in a child process, as a visitor backend would be: `ok` answers 204 to everything,
 * `hang` reads each request and never answers. Resolves with its URL once it listens.
 */
export async function remoteReceiver(mode: 'ok' | 'hang' = 'ok'): Promise<{ url: string; process: ChildProcess }> {
  const answer = mode === 'ok' ? "q.on('end', () => r.writeHead(204).end());" : '';
  const child = spawn(
    process.execPath,
    ['-e', `const s = require('node:http').createServer((q, r) => { q.resume(); ${answer} }); s.listen(0, '127.0.0.1', () => console.log(s.address().port));`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { url: `http://127.0.0.1:${line.toString().trim()}/hooks`, process: child };
}

/** The webhook counters of a /metrics text, by sample name (e.g. face_recog_webhook_retries_total). */
export function webhookCounters(metricsText: string): Record<string, number> {
  const values: Record<string, number> = {};
  for (const [, name, value] of metricsText.matchAll(/^(face_recog_webhook_\S+) (\S+)$/gm)) values[name] = Number(value);
  return values;
}

export const delivered = (outcome: string): string => `face_recog_webhook_deliveries_total{outcome="${outcome}"}`;
