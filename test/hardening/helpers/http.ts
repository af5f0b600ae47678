// Talking to a service that is being attacked: answers are read as text first (an answer that is
// not JSON is itself a finding), and checked against the contract's error shape.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { ERROR_STATUS, type ErrorCode } from '../../../src/errors.js';

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed JSON body, or undefined when the body is not JSON. */
  body: any;
}

/** Reads a response whole: status, headers, text and, when the text is JSON, its value. */
export async function answerOf(response: Response): Promise<Answer> {
  const text = await response.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, headers: response.headers, text, body };
}

export async function send(url: string, init: RequestInit = {}): Promise<Answer> {
  return answerOf(await fetch(url, init));
}

/** POSTs `body` (a value, sent as JSON, or raw text or bytes) with Content-Type: application/json. */
export function postJson(baseUrl: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return send(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : body instanceof Buffer ? new Blob([body]) : JSON.stringify(body),
  });
}

/** "200", or "<status> <code>" for an error answer. */
export function outcomeOf(answer: Pick<Answer, 'status' | 'body'>): string {
  return answer.status < 400 ? String(answer.status) : `${answer.status} ${answer.body?.error?.code ?? '(no code)'}`;
}

/** Longest error message we accept: a message names the problem, it does not echo the input. */
export const MAX_MESSAGE_LENGTH = 300;

/** How an error answer departs from CONTRACT.md's `{ error: { code, message } }` (empty when it does not). */
export function contractViolations(answer: Answer): string[] {
  if (answer.status < 400) return [];
  const problems: string[] = [];
  if (!/^application\/json/.test(answer.headers.get('content-type') ?? '')) problems.push(`content-type ${answer.headers.get('content-type')}`);
  const error = answer.body?.error;
  if (typeof error?.code !== 'string' || typeof error?.message !== 'string') return [...problems, `body is not an error: ${answer.text.slice(0, 200)}`];
  if (ERROR_STATUS[error.code as ErrorCode] !== answer.status) problems.push(`code ${error.code} with status ${answer.status}`);
  if (error.message.length > MAX_MESSAGE_LENGTH) problems.push(`message of ${error.message.length} characters`);
  if (/\bat .+\.(ts|js):\d+/.test(answer.text)) problems.push('a stack trace');
  if ([429, 503].includes(answer.status) && !answer.headers.get('retry-after')) problems.push('no Retry-After');
  return problems;
}

/** Slices of a payload that must never appear in a log: three 32-character windows of its base64 body. */
export function fingerprints(payload: string): string[] {
  const body = payload.replace(/^data:[^,]*,/, '');
  if (body.length < 96) return [];
  return [0.25, 0.5, 0.75].map((at) => body.slice(Math.floor(body.length * at), Math.floor(body.length * at) + 32));
}

/**
 * A request with its path sent exactly as given: fetch and WebSocket clients normalise dot
 * segments and drop fragments before sending, which would hide what the server does with them.
 */
export function rawRequest(baseUrl: string, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
  const { hostname, port } = new URL(baseUrl);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: hostname, port, method, path, agent: false, headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...headers } },
      (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk) => (text += chunk));
        response.on('end', () => {
          let parsed: any;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          const answerHeaders = new Headers();
          for (const [name, value] of Object.entries(response.headers)) if (typeof value === 'string') answerHeaders.set(name, value);
          resolve({ status: response.statusCode ?? 0, headers: answerHeaders, text, body: parsed });
        });
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}

/** A WebSocket opening handshake on a path sent exactly as given: 101 when the server upgrades, else its answer. */
export function rawHandshake(baseUrl: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: hostname,
      port,
      path,
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), ...headers },
    });
    request.on('upgrade', (_response, socket) => {
      socket.destroy();
      resolve({ status: 101, body: null });
    });
    request.on('response', (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
    });
    request.on('error', reject);
    request.end();
  });
}
