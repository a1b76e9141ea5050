// The CLI's side of the admin API: one JSON request per call over the daemon's Unix socket, or
// over its loopback port with a bearer token, every failure turned into the exit code it means.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import {
  API, type ApiError, type DomainDetail, type FailResult, type FlushResult, type Mailq, type MessageDetail,
  type ReloadResult, type RetryResult, type ShapingCleared, type ShapingList, type SuspendResult, type Summary, type Top,
} from '../admin/protocol.js';
import type { Config } from '../config/schema.js';

export const EXIT = { ok: 0, failure: 1, usage: 2, unreachable: 3, notFound: 4, unauthorized: 5 } as const;
type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class CliError extends Error {
  constructor(message: string, readonly exitCode: ExitCode, readonly details: readonly string[] = []) {
    super(message);
  }
}

interface Responses {
  summary: Summary;
  mailq: Mailq;
  domain: DomainDetail;
  flush: FlushResult;
  fail: FailResult;
  suspend: SuspendResult;
  resume: SuspendResult;
  message: MessageDetail;
  messageRetry: RetryResult;
  messageFail: FailResult;
  reload: ReloadResult;
  shaping: ShapingList;
  shapingClear: ShapingCleared;
  top: Top;
}
type Route = keyof typeof API;

interface CallOptions {
  params?: Record<string, string>;
  query?: Record<string, string | number | undefined>;
  body?: object;
}

type Endpoint =
  | { kind: 'socket'; path: string }
  | { kind: 'tcp'; host: string; port: number; token: string };

/** Where the daemon of this config serves the API; the token is read now so a bad file is a config error, not a 401. */
export function endpointOf(admin: Config['admin']): Endpoint {
  if (admin.listen === undefined) return { kind: 'socket', path: admin.socket };
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(admin.listen);
  if (!m?.[3]) throw new CliError(`admin.listen "${admin.listen}" has no port`, EXIT.usage);
  let token: string;
  try {
    token = readFileSync(admin.token_file!, 'utf8').trim();
  } catch (err) {
    throw new CliError(`cannot read admin.token_file: ${(err as Error).message}`, EXIT.usage);
  }
  if (!token) throw new CliError(`admin.token_file ${admin.token_file} is empty`, EXIT.usage);
  return { kind: 'tcp', host: m[1] ?? m[2]!, port: Number(m[3]), token };
}

const REASONS: Record<string, string> = {
  ENOENT: 'no such socket (ENOENT)',
  ECONNREFUSED: 'connection refused (ECONNREFUSED)',
  ECONNRESET: 'connection reset (ECONNRESET)',
};

const STATUS_EXIT: Record<number, ExitCode> = { 400: EXIT.usage, 401: EXIT.unauthorized, 404: EXIT.notFound };

export class AdminClient {
  constructor(
    private readonly endpoint: Endpoint,
    /** Named in the unreachable hint, since that is where the operator fixes the address. */
    private readonly configPath: string,
    private readonly timeoutMs = 60_000,
  ) {}

  call<R extends Route>(route: R, opts: CallOptions = {}): Promise<Responses[R]> {
    const [method, template] = API[route].split(' ') as [string, string];
    const path = template.replace(/:(\w+)/g, (_, name: string) => {
      const value = opts.params?.[name];
      if (value === undefined) throw new Error(`route ${route} needs ${name}`);
      return encodeURIComponent(value);
    });
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) query.set(k, String(v));
    const qs = query.toString();
    return this.send(method, qs ? `${path}?${qs}` : path, opts.body) as Promise<Responses[R]>;
  }

  private where(): string {
    const e = this.endpoint;
    return e.kind === 'socket' ? `socket ${e.path}` : `${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
  }

  private unreachable(reason: string): CliError {
    const key = this.endpoint.kind === 'socket' ? 'admin.socket' : 'admin.listen';
    return new CliError(`cannot reach the daemon at ${this.where()}: ${reason}; `
      + `check that it is running and that ${key} in ${this.configPath} is where it serves the admin API`, EXIT.unreachable);
  }

  private send(method: string, path: string, body: object | undefined): Promise<unknown> {
    const e = this.endpoint;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    if (e.kind === 'tcp') headers.authorization = `Bearer ${e.token}`;
    const target = e.kind === 'socket' ? { socketPath: e.path, host: 'localhost' } : { host: e.host, port: e.port };
    return new Promise((resolve, reject) => {
      // No keep-alive agent: an idle pooled socket would hold a one-shot command open.
      const req = request({ ...target, method, path, headers, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('error', (err) => reject(this.unreachable(err.message)));
        res.on('end', () => {
          try {
            resolve(this.answer(res.statusCode ?? 0, text));
          } catch (err) {
            reject(err);
          }
        });
      });
      req.setTimeout(this.timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ETIMEDOUT') reject(this.unreachable(`no answer within ${this.timeoutMs / 1000} s (--timeout)`));
        else if (err.code === 'EACCES') reject(this.unreachable('permission denied (run as the user the daemon runs as)'));
        else reject(this.unreachable(REASONS[err.code ?? ''] ?? err.message));
      });
      req.end(payload);
    });
  }

  private answer(status: number, text: string): unknown {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new CliError(`unreadable answer from the daemon (HTTP ${status}): ${text.slice(0, 200)}`, EXIT.failure);
    }
    if (status >= 200 && status < 300) return json;
    const error = (json as Partial<ApiError> | null)?.error;
    let message = typeof error?.message === 'string' ? error.message : `HTTP ${status}`;
    if (status === 401) message += `; check admin.token_file in ${this.configPath} against the daemon's`;
    throw new CliError(message, STATUS_EXIT[status] ?? EXIT.failure, Array.isArray(error?.details) ? error.details : []);
  }
}
