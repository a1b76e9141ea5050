// A webhook endpoint on loopback: records every request it answers, and answers as the test sets
// it: 200, an error status, or nothing at all until released (a stalled endpoint).
import { type IncomingHttpHeaders, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Condition } from './wait.js';

export interface ReceivedRequest {
  headers: IncomingHttpHeaders;
  body: string;
  /** The status it was answered with. */
  status: number;
}

export type ReceiverMode = { answer: number } | { stall: true };

export interface Receiver {
  url: string;
  /** Requests answered, in the order they came. */
  requests: ReceivedRequest[];
  /** Records of the requests answered 2xx, in order. */
  readonly taken: Array<Record<string, any>>;
  setMode(mode: ReceiverMode): void;
  /** Waits until `check` over the requests answered returns a value. */
  until<T>(check: (r: Receiver) => T | undefined, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

export async function startReceiver(host = '127.0.0.1'): Promise<Receiver> {
  const changed = new Condition();
  let mode: ReceiverMode = { answer: 200 };
  const stalled: Array<() => void> = [];
  const requests: ReceivedRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = () => {
        const status = 'answer' in mode ? mode.answer : 200;
        requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), status });
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'not now');
        changed.notify();
      };
      if ('stall' in mode) stalled.push(answer);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  const receiver: Receiver = {
    url: `http://${host}:${port}/hook`,
    requests,
    get taken() {
      return requests.filter((r) => r.status < 300).flatMap((r) => JSON.parse(r.body) as Array<Record<string, any>>);
    },
    setMode(next) {
      mode = next;
      if (!('stall' in next)) for (const answer of stalled.splice(0)) answer();
    },
    until: (check, timeoutMs = 20_000) => changed.until(() => check(receiver), timeoutMs,
      () => `${requests.length} requests, ${receiver.taken.length} records taken: ${JSON.stringify(receiver.taken.map((r) => `${r.event}:${r.qid}`))}`),
    close: () => new Promise((resolve) => {
      for (const answer of stalled.splice(0)) answer();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  return receiver;
}
