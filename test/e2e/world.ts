// A small internet on loopback for end-to-end tests: a DNS server, SMTP sinks on distinct
// 127.0.0.x addresses sharing one port (the daemon's remote_smtp_port), and a daemon config
// pointing at both. Each test file builds its own world, so files run in parallel.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Daemon, startDaemon } from '../helpers/daemon.js';
import { type TestDns, type Zone, startDns } from '../helpers/dns.js';
import { freePort } from '../helpers/ports.js';
import { type Sink, type SinkBehaviour, type SinkOptions, startSink } from '../helpers/sink.js';

export interface World {
  dns: TestDns;
  sinks: Record<string, Sink>;
  sinkPort: number;
  intakePort: number;
  dir: string;
  config: Record<string, unknown>;
  /** A daemon on the world's config with `overrides`; `env` adds to its environment. */
  start(overrides?: Record<string, unknown>, env?: NodeJS.ProcessEnv): Promise<Daemon>;
  /**
   * A node of a cluster on the world's config with `overrides`: named `name`, in a directory of its
   * own (its config file and admin socket, so the CLI reaches this node), on an intake port of its own.
   */
  startNode(name: string, overrides?: Record<string, unknown>): Promise<{ daemon: Daemon; port: number }>;
  startSink(name: string, host: string, behaviour?: SinkBehaviour, tls?: SinkOptions['tls'], extensions?: SinkOptions['extensions']): Promise<Sink>;
  close(): Promise<void>;
}

export async function buildWorld(opts: {
  zone: Zone;
  sinks: Record<string, { host: string; behaviour?: SinkBehaviour; tls?: SinkOptions['tls']; extensions?: SinkOptions['extensions'] }>;
  config?: Record<string, unknown>;
}): Promise<World> {
  const dns = await startDns(opts.zone);
  const sinkPort = await freePort('127.0.0.2');
  const intakePort = await freePort('127.0.0.1');
  const dir = mkdtempSync(join(tmpdir(), 'impulse-e2e-'));
  const sinks: Record<string, Sink> = {};
  const daemons: Daemon[] = [];
  const world: World = {
    dns, sinks, sinkPort, intakePort, dir,
    config: {
      hostname: 'impulse.test',
      ehlo_hostname: 'out.impulse.test',
      redis: { embedded: true, dir: join(dir, 'redis'), appendfsync: 'everysec' },
      listen: [{ address: '127.0.0.1', port: intakePort }],
      dns: { servers: [dns.server], timeout: '500ms', tries: 1 },
      remote_smtp_port: sinkPort,
      prohibited_hosts: [],
      retry_interval: '1s',
      max_retry_interval: '2s',
      connect_timeout: '2s',
      greeting_timeout: '2s',
      data_timeout: '5s',
      shutdown_timeout: '5s',
      host_failure_retry: '1s',
      ...opts.config,
    },
    async start(overrides = {}, env) {
      // Daemons of one world share its dir; each needs its own admin socket.
      const admin = { socket: join(dir, `admin-${daemons.length}.sock`) };
      const d = await startDaemon({ admin, ...world.config, ...overrides }, { dir, ...(env ? { env } : {}) });
      daemons.push(d);
      return d;
    },
    async startNode(name, overrides = {}) {
      const port = await freePort('127.0.0.1');
      const own = join(dir, name);
      mkdirSync(own);
      const daemon = await startDaemon({
        ...world.config, node_name: name, listen: [{ address: '127.0.0.1', port }], admin: { socket: join(own, 'admin.sock') }, ...overrides,
      }, { dir: own });
      daemons.push(daemon);
      return { daemon, port };
    },
    async startSink(name, host, behaviour, tls, extensions) {
      const sink = await startSink({ host, port: sinkPort, ...(behaviour ? { behaviour } : {}), ...(tls ? { tls } : {}), ...(extensions ? { extensions } : {}) });
      sinks[name] = sink;
      return sink;
    },
    async close() {
      for (const d of daemons) {
        if (d.proc.exitCode === null && d.proc.signalCode === null) await d.stop();
      }
      await Promise.all(Object.values(sinks).map((s) => s.close()));
      await dns.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const [name, s] of Object.entries(opts.sinks)) await world.startSink(name, s.host, s.behaviour, s.tls, s.extensions);
  return world;
}

/** Zone entries giving each domain one MX, `mx.<domain>`, at the given address. */
export function mxZone(domains: Record<string, string>): Zone {
  const zone: Zone = {};
  for (const [domain, address] of Object.entries(domains)) {
    zone[domain] = { mx: [{ preference: 10, exchange: `mx.${domain}` }] };
    zone[`mx.${domain}`] = { a: [address] };
  }
  return zone;
}

/** The queue id from a `250 2.0.0 Ok queued as <id>` reply. */
export function queueIdOf(response: string): string {
  const m = /^250 2\.0\.0 Ok queued as (\S+)/.exec(response);
  if (!m) throw new Error(`not a queued reply: ${response}`);
  return m[1]!;
}

/** Splits a message into its leading Received header (with folded lines) and the rest. */
export function splitReceived(raw: Buffer): { received: string; rest: Buffer } {
  const text = raw.toString('latin1');
  const m = /^Received: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n/.exec(text);
  if (!m) throw new Error(`message does not start with a Received header: ${text.slice(0, 200)}`);
  return { received: m[0], rest: raw.subarray(Buffer.byteLength(m[0], 'latin1')) };
}

/** The body of the MIME part with the given content type, from a multipart message. */
export function mimePart(raw: Buffer, contentType: string): string | undefined {
  const text = raw.toString('latin1');
  const boundary = /boundary="?([^";\r\n]+)"?/i.exec(text)?.[1];
  if (!boundary) return undefined;
  for (const part of text.split(`--${boundary}`)) {
    const sep = part.indexOf('\r\n\r\n');
    if (sep < 0) continue;
    if (new RegExp(`^\\s*Content-Type:\\s*${contentType.replace('/', '\\/')}`, 'im').test(part.slice(0, sep))) {
      return part.slice(sep + 4);
    }
  }
  return undefined;
}
