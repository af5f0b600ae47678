// A WebSocket client for /ws/realtime in tests: keeps every message, can wait for the next one or
// for a given number, and reports how the connection ended.
import WebSocket from 'ws';

export class RealtimeClient {
  readonly socket: WebSocket;
  readonly messages: any[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];

  constructor(url: string, options: WebSocket.ClientOptions = {}) {
    this.socket = new WebSocket(url, options);
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('open', () => resolve());
      this.socket.once('error', reject);
      this.socket.once('unexpected-response', (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
    });
    this.closed = new Promise((resolve) => {
      this.socket.once('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.waiters.splice(0).forEach((wake) => wake());
      });
    });
    // A socket the server cuts off may report an error after it was opened; `closed` tells the story.
    this.socket.on('error', () => undefined);
    this.socket.on('message', (data, isBinary) => {
      this.messages.push(isBinary ? { binary: true } : JSON.parse(data.toString()));
      this.waiters.splice(0).forEach((wake) => wake());
    });
  }

  static async connect(url: string, options?: WebSocket.ClientOptions): Promise<RealtimeClient> {
    const client = new RealtimeClient(url, options);
    await client.opened;
    return client;
  }

  get open(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  send(message: unknown): void {
    this.socket.send(typeof message === 'string' || Buffer.isBuffer(message) ? message : JSON.stringify(message));
  }

  /** Resolves once `count` messages have arrived in total; rejects if the socket closes first. */
  async receive(count: number): Promise<any[]> {
    while (this.messages.length < count) {
      if (this.socket.readyState >= WebSocket.CLOSING) throw new Error(`socket closed after ${this.messages.length} of ${count} messages`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.messages.slice(0, count);
  }

  /**
   * Sends one message and resolves with the single answer it gets. Visitor events are not answers
   * (a frame may raise one before its results): they stay in `messages` and are passed over here.
   */
  async ask(message: unknown): Promise<any> {
    const before = this.messages.length;
    this.send(message);
    const received = await this.until((messages) => messages.slice(before).some((m) => m.type !== 'event'));
    return received.slice(before).find((m) => m.type !== 'event');
  }

  /** Resolves when `test` holds for the messages so far. */
  async until(test: (messages: any[]) => boolean): Promise<any[]> {
    while (!test(this.messages)) {
      if (this.socket.readyState >= WebSocket.CLOSING) throw new Error(`socket closed after ${this.messages.length} messages`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.messages;
  }
}

/** "results", "dropped", or "error <code>". */
export function wsOutcome(message: any): string {
  return message.type === 'error' ? `error ${message.code}` : String(message.type);
}
