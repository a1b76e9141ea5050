// The HTTP endpoint for Prometheus and for orchestrators' probes. Plain node:http: three GET
// routes do not justify a framework, and nothing here needs authentication (it serves no mail).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

export interface StatusServerOptions {
  /** 'host:port' or '[v6]:port'; port 0 picks a free one. */
  listen: string;
  registry: Registry;
  /** Process up and Redis reachable; each check names its state. */
  health(): Promise<{ ok: boolean; checks: Record<string, string> }>;
  /** Intake listeners bound. */
  ready(): boolean;
  log: Logger;
}

export interface StatusServer {
  readonly port: number;
  readonly host: string;
  /** Stops listening and drops open connections, keep-alive ones included. */
  close(): Promise<void>;
}

/** Serves GET /metrics, /healthz and /readyz; rejects when `listen` cannot be bound. */
export async function startStatusServer(o: StatusServerOptions): Promise<StatusServer> {
  const { host, port } = parseListen(o.listen);
  const server = createServer((req, res) => {
    route(o, req, res).catch((err: unknown) => {
      o.log.error({ event: 'status_error', err, path: req.url }, 'status request failed');
      if (!res.headersSent) json(res, 500, { status: 'error' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => reject(new Error(`status server cannot listen on ${o.listen}: ${err.message}`, { cause: err }));
    server.once('error', failed);
    server.listen({ host, port }, () => {
      server.off('error', failed);
      resolve();
    });
  });
  server.on('error', (err) => o.log.error({ event: 'status_server_error', err }, 'status server error'));
  const bound = (server.address() as AddressInfo).port;
  o.log.info({ event: 'metrics_listening', listen: o.listen, port: bound }, 'metrics and health checks listening');
  return {
    port: bound,
    host,
    close: () => new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeAllConnections();
    }),
  };
}

async function route(o: StatusServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://status').pathname;
  if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') return json(res, 404, { status: 'not found' });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return json(res, 405, { status: 'method not allowed' });
  }
  if (path === '/metrics') {
    const body = await o.registry.metrics();
    res.writeHead(200, { 'content-type': o.registry.contentType });
    res.end(body);
  } else if (path === '/healthz') {
    const { ok, checks } = await o.health();
    json(res, ok ? 200 : 503, { status: ok ? 'ok' : 'fail', checks });
  } else {
    const ready = o.ready();
    json(res, ready ? 200 : 503, { status: ready ? 'ok' : 'fail' });
  }
}

function json(res: ServerResponse, code: number, body: object): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new Error(`status server listen must be host:port or [v6]:port, got '${listen}'`);
  return { host: (m[1] ?? m[2])!, port };
}
