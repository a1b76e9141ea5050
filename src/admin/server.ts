// The admin API: JSON over HTTP on a Unix socket only its owner may open (mode 0600), or on a
// loopback port where every request must carry the bearer token. Routes are in protocol.ts.
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { failDomain, failMessage, flush, retryMessage, suspend } from './actions.js';
import { clearShaping, shapingList } from './shaping.js';
import type { AdminContext } from './context.js';
import { showMessage } from './message.js';
import type { ApiError, ErrorCode } from './protocol.js';
import { top } from './top.js';
import { NotFound, domainDetail, mailq, summary } from './views.js';

interface AdminListen {
  socket: string;
  listen?: string | undefined;
  token_file?: string | undefined;
}

const STATUS: Record<ErrorCode, number> = { bad_request: 400, unauthorized: 401, not_found: 404, invalid_config: 422, internal: 500 };
const MAX_BODY = 64 * 1024;
const DEFAULT_MAILQ_LIMIT = 100;
/** Rows of `impulse top` unless asked for more: more than any terminal shows, few enough to serve every second. */
const DEFAULT_TOP_LIMIT = 500;

class ApiFailure extends Error {
  constructor(readonly code: ErrorCode, message: string, readonly details?: string[]) {
    super(message);
  }
}

type Body = Record<string, unknown>;
type Handler = (ctx: AdminContext, params: string[], query: URLSearchParams, body: Body) => Promise<unknown> | unknown;

const str = (v: unknown, what: string): string | undefined => {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new ApiFailure('bad_request', `${what} must be a non-empty string`);
  return v;
};

function oneTarget(body: Body): { domain?: string; binding?: string } {
  const domain = str(body.domain, 'domain')?.toLowerCase();
  const binding = str(body.binding, 'binding');
  if ((domain === undefined) === (binding === undefined)) throw new ApiFailure('bad_request', 'give exactly one of domain or binding');
  return domain !== undefined ? { domain } : { binding: binding! };
}

const ROUTES: Array<[string, RegExp, Handler]> = [
  ['GET', /^\/v1\/summary$/, (ctx) => summary(ctx)],
  ['GET', /^\/v1\/mailq$/, (ctx, _p, q) => {
    const limit = q.has('limit') ? Number(q.get('limit')) : DEFAULT_MAILQ_LIMIT;
    if (!Number.isInteger(limit) || limit < 1) throw new ApiFailure('bad_request', 'limit must be a positive integer');
    return mailq(ctx, { ...(q.get('domain') ? { domain: q.get('domain')!.toLowerCase() } : {}), ...(q.get('binding') ? { binding: q.get('binding')! } : {}), limit });
  }],
  ['GET', /^\/v1\/top$/, (ctx, _p, q) => {
    const limit = q.has('limit') ? Number(q.get('limit')) : DEFAULT_TOP_LIMIT;
    if (!Number.isInteger(limit) || limit < 1) throw new ApiFailure('bad_request', 'limit must be a positive integer');
    return top(ctx, limit);
  }],
  ['GET', /^\/v1\/domains\/([^/]+)$/, (ctx, [d]) => domainDetail(ctx, d!.toLowerCase())],
  ['POST', /^\/v1\/flush$/, (ctx, _p, _q, b) => flush(ctx, str(b.domain, 'domain')?.toLowerCase())],
  ['POST', /^\/v1\/fail$/, (ctx, _p, _q, b) => {
    const domain = str(b.domain, 'domain');
    if (!domain) throw new ApiFailure('bad_request', 'domain is required');
    return failDomain(ctx, domain.toLowerCase(), b.quiet === true, str(b.note, 'note'));
  }],
  ['POST', /^\/v1\/suspend$/, (ctx, _p, _q, b) => suspend(ctx, oneTarget(b), true)],
  ['POST', /^\/v1\/resume$/, (ctx, _p, _q, b) => suspend(ctx, oneTarget(b), false)],
  ['GET', /^\/v1\/messages\/([^/]+)$/, (ctx, [id]) => showMessage(ctx, id!)],
  ['POST', /^\/v1\/messages\/([^/]+)\/retry$/, (ctx, [id]) => retryMessage(ctx, id!)],
  ['POST', /^\/v1\/messages\/([^/]+)\/fail$/, (ctx, [id], _q, b) => failMessage(ctx, id!, b.quiet === true, str(b.note, 'note'))],
  ['GET', /^\/v1\/shaping$/, (ctx) => shapingList(ctx)],
  ['POST', /^\/v1\/shaping\/clear$/, (ctx, _p, _q, b) => {
    const filter = { id: str(b.id, 'id'), rule: str(b.rule, 'rule'), domain: str(b.domain, 'domain')?.toLowerCase(), binding: str(b.binding, 'binding'), site: str(b.site, 'site') };
    if (Object.values(filter).every((v) => v === undefined)) throw new ApiFailure('bad_request', 'give at least one of id, rule, domain, binding or site');
    return clearShaping(ctx, filter);
  }],
  ['POST', /^\/v1\/reload$/, async (ctx) => {
    const r = await ctx.reload();
    if (!r.ok) throw new ApiFailure('invalid_config', 'the new configuration is invalid; the old one stays in force', r.errors);
    return { reloaded: true, restart_required: r.restart_required };
  }],
];

function readBody(req: IncomingMessage): Promise<Body> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) reject(new ApiFailure('bad_request', 'request body too large'));
      else chunks.push(c);
    });
    req.on('end', () => {
      if (size === 0) return resolve({});
      try {
        const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Body);
      } catch {
        reject(new ApiFailure('bad_request', 'request body must be a JSON object'));
      }
    });
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Whether something already answers on the socket: a second daemon must not steal it. */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class AdminServer {
  private server: Server | undefined;
  private token: Buffer | undefined;

  constructor(private readonly ctx: AdminContext, private readonly opts: AdminListen, private readonly log: Logger) {}

  /** Where the API answers, for logs and errors. */
  get where(): string {
    return this.opts.listen ?? this.opts.socket;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    if (this.opts.listen) {
      // Keep only a digest: compared in constant time whatever the length of what was sent.
      this.token = createHash('sha256').update(readFileSync(this.opts.token_file!, 'utf8').trim()).digest();
      const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(this.opts.listen)!;
      await this.listen(server, () => server.listen(Number(m[2]), m[1]));
    } else {
      const path = this.opts.socket;
      mkdirSync(dirname(path), { recursive: true });
      if (existsSync(path)) {
        if (await socketInUse(path)) throw new Error(`admin socket ${path} is in use: is another daemon running on this config?`);
        unlinkSync(path);
      }
      await this.listen(server, () => server.listen(path));
      chmodSync(path, 0o600);
    }
    this.server = server;
    this.log.info({ event: 'admin_listening', at: this.where }, 'admin API listening');
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private listen(server: Server, start: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`admin API cannot listen on ${this.where}: ${err.message}`)));
      server.once('listening', () => resolve());
      start();
    });
  }

  private authorized(req: IncomingMessage): boolean {
    if (!this.token) return true;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(createHash('sha256').update(m[1]!.trim()).digest(), this.token);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    try {
      if (!this.authorized(req)) throw new ApiFailure('unauthorized', 'missing or wrong bearer token');
      const route = ROUTES.map(([method, re, h]) => ({ method, m: re.exec(url.pathname), h })).find((r) => r.m && r.method === req.method);
      if (!route) throw new ApiFailure('not_found', `no route ${req.method} ${url.pathname}`);
      const body = req.method === 'POST' ? await readBody(req) : {};
      const params = route.m!.slice(1).map((p) => decodeURIComponent(p));
      send(res, 200, await route.h(this.ctx, params, url.searchParams, body));
      this.log.debug({ event: 'admin_request', method: req.method, path: url.pathname }, 'admin request');
    } catch (err) {
      const code: ErrorCode = err instanceof ApiFailure ? err.code : err instanceof NotFound ? 'not_found' : 'internal';
      if (code === 'internal') this.log.error({ event: 'admin_error', path: url.pathname, err: (err as Error).message }, 'admin request failed');
      const body: ApiError = { error: { code, message: (err as Error).message, ...(err instanceof ApiFailure && err.details ? { details: err.details } : {}) } };
      send(res, STATUS[code], body);
    }
  }
}
