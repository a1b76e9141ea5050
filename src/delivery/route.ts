// From destination domain to the addresses it may be delivered to: static route, or MX records
// (RFC 5321 §5.1: preference order, equal preferences shuffled, implicit MX from the address
// records when there is no MX; RFC 7505 null MX). Policy (prohibited hosts, failures, limits)
// is applied later, at connection time, so a config reload takes effect without a new lookup.
import { isIP } from 'node:net';
import { type Reply, reply } from '../core/reply.js';
import { type DnsResolver, classifyLookupError } from '../dns/resolver.js';

export interface Target {
  host: string;
  preference: number;
  address: string;
  port: number;
}

export type LookupResult =
  | { kind: 'targets'; targets: Target[]; ttlMs: number }
  | { kind: 'null_mx'; reply: Reply }
  /** The domain does not exist, or none of its MX hosts has an address: permanent when `reply` is 5xx. */
  | { kind: 'failed'; reply: Reply };

interface LookupOptions {
  routes: Record<string, string>;
  port: number;
  random?: () => number;
}

const TTL_FLOOR_MS = 30_000;
const TTL_CEILING_MS = 3_600_000;

function splitHostPort(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  return { host: m?.[1] ?? text, port: m?.[2] ? Number(m[2]) : defaultPort };
}

type HostAddresses = { addresses: string[]; ttlMs: number; failure?: 'nxdomain' | 'temporary' };

async function addressesOf(host: string, resolver: DnsResolver): Promise<HostAddresses> {
  if (isIP(host)) return { addresses: [host], ttlMs: TTL_CEILING_MS };
  try {
    const records = await resolver.resolve4(host);
    return { addresses: records.map((r) => r.address), ttlMs: Math.min(...records.map((r) => r.ttl * 1000)) };
  } catch (err) {
    const kind = classifyLookupError(err);
    return { addresses: [], ttlMs: TTL_FLOOR_MS, ...(kind === 'nodata' ? {} : { failure: kind }) };
  }
}

function shuffleWithinPreference<T extends { preference: number }>(items: T[], random: () => number): T[] {
  const keyed = items.map((item) => ({ item, key: random() }));
  keyed.sort((a, b) => a.item.preference - b.item.preference || a.key - b.key);
  return keyed.map((k) => k.item);
}

type MxHosts = { kind: 'hosts'; hosts: Array<{ host: string; preference: number }> } | Exclude<LookupResult, { kind: 'targets' }>;

async function mxHosts(domain: string, resolver: DnsResolver): Promise<MxHosts> {
  try {
    const mx = await resolver.resolveMx(domain);
    const isNull = (r: { exchange: string }) => r.exchange === '' || r.exchange === '.';
    // RFC 7505 §3: a null MX counts only as the sole record; beside others it is ignored.
    if (mx.length === 1 && isNull(mx[0]!)) {
      return { kind: 'null_mx', reply: reply(556, '5.1.10', `[internal] ${domain} does not accept mail (null MX, RFC 7505)`) };
    }
    const real = mx.filter((r) => !isNull(r));
    if (real.length > 0) return { kind: 'hosts', hosts: real.map((r) => ({ host: r.exchange.toLowerCase(), preference: r.priority })) };
  } catch (err) {
    const kind = classifyLookupError(err);
    if (kind === 'nxdomain') return { kind: 'failed', reply: reply(550, '5.1.2', `[internal] domain ${domain} does not exist (NXDOMAIN)`) };
    if (kind === 'temporary') {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      return { kind: 'failed', reply: reply(451, '4.4.3', `[internal] DNS MX lookup for ${domain} failed temporarily (${code})`) };
    }
  }
  // RFC 5321 §5.1: no MX records, so the domain itself is the implicit MX.
  return { kind: 'hosts', hosts: [{ host: domain, preference: 0 }] };
}

export async function lookupTargets(domain: string, resolver: DnsResolver, opts: LookupOptions): Promise<LookupResult> {
  const random = opts.random ?? Math.random;
  const staticRoute = opts.routes[domain] === undefined ? undefined : splitHostPort(opts.routes[domain], opts.port);
  const found: MxHosts = staticRoute
    ? { kind: 'hosts', hosts: [{ host: staticRoute.host, preference: 0 }] }
    : await mxHosts(domain, resolver);
  if (found.kind !== 'hosts') return found;
  const port = staticRoute?.port ?? opts.port;

  const targets: Target[] = [];
  let temporary = false;
  let ttlMs = TTL_CEILING_MS;
  for (const h of shuffleWithinPreference(found.hosts, random)) {
    const a = await addressesOf(h.host, resolver);
    if (a.failure === 'temporary') temporary = true;
    ttlMs = Math.min(ttlMs, a.ttlMs);
    for (const address of a.addresses) targets.push({ host: h.host, preference: h.preference, address, port });
  }
  if (targets.length > 0) return { kind: 'targets', targets, ttlMs: Math.max(TTL_FLOOR_MS, ttlMs) };
  if (temporary) {
    return { kind: 'failed', reply: reply(451, '4.4.3', `[internal] address lookup for the MX hosts of ${domain} failed temporarily`) };
  }
  return { kind: 'failed', reply: reply(550, '5.4.4', `[internal] no MX or A for ${domain}: none of its MX hosts has an address`) };
}
