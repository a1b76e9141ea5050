// The interop set-up: the e2e world's DNS and daemon, smtp-sinks as the MXs of the test domains, and optionally an upstream Postfix relaying into Impulse through a tap.
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { Daemon } from '../helpers/daemon.js';
import type { Zone } from '../helpers/dns.js';
import { freePort } from '../helpers/ports.js';
import { waitForQueueEmpty } from '../helpers/redis.js';
import { type World, buildWorld, mxZone } from '../e2e/world.js';
import { type Postfix, startPostfix } from './postfix.js';
import { type SinkFeatures, type SmtpSink, startSmtpSink } from './smtp-sink.js';
import { type Tap, startTap } from './tap.js';

export type SinkSpec = {
  host: string;
  /** The domains whose one MX (mx.<domain>) is this sink. */
  domains: string[];
  features?: SinkFeatures;
  rejectRcpt?: string;
  deferRcpt?: string;
};

export type Interop = {
  world: World;
  daemon: Daemon;
  sinks: Record<string, SmtpSink>;
  /** Present when built with `postfix: true`. */
  postfix?: Postfix;
  /** Between Postfix and Impulse's intake. */
  upstreamTap?: Tap;
  close(): Promise<void>;
};

/** The sinks most files use: two full MXs, one bare, one refusing every recipient, the senders'. */
export const STANDARD_SINKS: Record<string, SinkSpec> = {
  full: { host: '127.0.0.2', domains: ['a.test', 'c.test'] },
  full2: { host: '127.0.0.3', domains: ['b.test'] },
  bare: { host: '127.0.0.4', domains: ['bare.test'], features: 'bare' },
  reject: { host: '127.0.0.5', domains: ['reject.test'], rejectRcpt: '550 5.1.1 Recipient address rejected: no such user' },
  sender: { host: '127.0.0.6', domains: ['sender.test'] },
};

export async function buildInterop(opts: {
  sinks: Record<string, SinkSpec>;
  postfix?: boolean;
  /** Daemon settings beyond the e2e world's defaults. */
  config?: Record<string, unknown>;
  /** Settings that need the world (its ports, its directory), applied over `config`. */
  daemonConfig?: (world: World) => Record<string, unknown> | Promise<Record<string, unknown>>;
}): Promise<Interop> {
  const zone: Zone = {};
  for (const s of Object.values(opts.sinks)) Object.assign(zone, mxZone(Object.fromEntries(s.domains.map((d) => [d, s.host]))));
  // data_timeout above idle_timeout (5s), as in production (600s): with the e2e world's 5s the
  // client's inactivity timer would close idle connections before Impulse's QUIT.
  const world = await buildWorld({ zone, sinks: {}, config: { data_timeout: '30s', ...opts.config } });
  // smtp-sink and Postfix's daemons run as user postfix and write below this directory.
  chmodSync(world.dir, 0o755);
  const sinks: Record<string, SmtpSink> = {};
  let postfix: Postfix | undefined;
  let upstreamTap: Tap | undefined;
  const close = async () => {
    await postfix?.stop();
    await upstreamTap?.close();
    await world.close();
    await Promise.all(Object.values(sinks).map((s) => s.close()));
  };
  try {
    for (const [name, s] of Object.entries(opts.sinks)) {
      sinks[name] = await startSmtpSink({
        host: s.host, port: world.sinkPort, dir: world.dir, name: `mx.${s.domains[0]}`,
        ...(s.features ? { features: s.features } : {}),
        ...(s.rejectRcpt ? { rejectRcpt: s.rejectRcpt } : {}),
        ...(s.deferRcpt ? { deferRcpt: s.deferRcpt } : {}),
      });
    }
    const daemon = await world.start(opts.daemonConfig ? await opts.daemonConfig(world) : {});
    if (opts.postfix) {
      upstreamTap = await startTap({ host: '127.0.0.1', port: await freePort('127.0.0.1'), target: { host: '127.0.0.1', port: world.intakePort } });
      postfix = await startPostfix({ dir: world.dir, relayhost: { host: '127.0.0.1', port: upstreamTap.port } });
    }
    return { world, daemon, sinks, ...(postfix ? { postfix } : {}), ...(upstreamTap ? { upstreamTap } : {}), close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Resolves once Impulse's delivery queue (in the world's embedded Redis) holds no job: whatever it
 * took in, DSNs it queued included, was delivered or failed. Polled every 100 ms by the helper.
 */
export function impulseDrained(net: Interop, timeoutMs = 30000): Promise<void> {
  return waitForQueueEmpty(join(net.world.dir, 'redis', 'redis.sock'), timeoutMs);
}

/** Postfix's queue id from `250 2.0.0 Ok: queued as ID`. */
export function postfixQueueId(reply: string): string {
  const m = /^250 2\.0\.0 Ok: queued as ([0-9A-F]+)/.exec(reply);
  if (!m) throw new Error(`not a Postfix queued reply: ${reply}`);
  return m[1]!;
}

/** Removes the leading Received headers (LF line ends, as smtp-sink dumps) and returns them with the rest. */
export function stripReceived(message: Buffer): { received: string[]; rest: Buffer } {
  const text = message.toString('latin1');
  const received: string[] = [];
  let at = 0;
  for (;;) {
    const m = /^Received: [^\n]*\n(?:[ \t][^\n]*\n)*/.exec(text.slice(at));
    if (!m) break;
    received.push(m[0]);
    at += m[0].length;
  }
  return { received, rest: message.subarray(at) };
}
