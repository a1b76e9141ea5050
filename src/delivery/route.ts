// From destination domain to an ordered list of addresses to try: static route, or MX records
// (RFC 5321 §5.1: preference order, equal preferences shuffled, implicit MX from the address
// records when there is no MX, RFC 7505 null MX), minus prohibited addresses.
import { isIP } from 'node:net';
import type { AddressSet } from '../core/cidr.js';
import { ImpulseError } from '../core/error.js';
import { reply } from '../core/reply.js';
import { type DnsResolver, classifyLookupError } from '../dns/resolver.js';

export interface Target {
  host: string;
  preference: number;
  address: string;
  port: number;
}

export interface RouteOptions {
  routes: Record<string, string>;
  port: number;
  prohibited: AddressSet;
  random?: () => number;
}

function splitHostPort(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  return { host: m?.[1] ?? text, port: m?.[2] ? Number(m[2]) : defaultPort };
}

function dnsFailure(domain: string, what: string, err: unknown): ImpulseError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new ImpulseError('MX_LOOKUP_FAILED',
    reply(451, '4.4.3', `[internal] DNS ${what} lookup for ${domain} failed temporarily (${code})`), { cause: err });
}

async function addressesOf(host: string, resolver: DnsResolver): Promise<{ addresses: string[]; failure?: 'nxdomain' | 'temporary' }> {
  if (isIP(host)) return { addresses: [host] };
  try {
    return { addresses: await resolver.resolve4(host) };
  } catch (err) {
    const kind = classifyLookupError(err);
    return { addresses: [], ...(kind === 'nodata' ? {} : { failure: kind }) };
  }
}

function shuffleWithinPreference<T extends { preference: number }>(items: T[], random: () => number): T[] {
  const keyed = items.map((item) => ({ item, key: random() }));
  keyed.sort((a, b) => a.item.preference - b.item.preference || a.key - b.key);
  return keyed.map((k) => k.item);
}

async function mxHosts(domain: string, resolver: DnsResolver): Promise<Array<{ host: string; preference: number }>> {
  try {
    const mx = await resolver.resolveMx(domain);
    const isNull = (r: { exchange: string }) => r.exchange === '' || r.exchange === '.';
    // RFC 7505 §3: a null MX counts only as the sole record; beside others it is ignored.
    if (mx.length === 1 && isNull(mx[0]!)) {
      throw new ImpulseError('SMTP_NULL_MX', reply(556, '5.1.10', `[internal] ${domain} does not accept mail (null MX, RFC 7505)`));
    }
    const real = mx.filter((r) => !isNull(r));
    if (real.length > 0) return real.map((r) => ({ host: r.exchange.toLowerCase(), preference: r.priority }));
  } catch (err) {
    if (err instanceof ImpulseError) throw err;
    const kind = classifyLookupError(err);
    if (kind === 'nxdomain') {
      throw new ImpulseError('NXDOMAIN', reply(550, '5.1.2', `[internal] domain ${domain} does not exist (NXDOMAIN)`));
    }
    if (kind === 'temporary') throw dnsFailure(domain, 'MX', err);
  }
  // RFC 5321 §5.1: no MX records, so the domain itself is the implicit MX.
  return [{ host: domain, preference: 0 }];
}

export async function resolveTargets(domain: string, resolver: DnsResolver, opts: RouteOptions): Promise<Target[]> {
  const random = opts.random ?? Math.random;
  const staticRoute = opts.routes[domain];
  const hosts = staticRoute
    ? [{ ...splitHostPort(staticRoute, opts.port), preference: 0 }]
    : (await mxHosts(domain, resolver)).map((h) => ({ ...h, port: opts.port }));

  const targets: Target[] = [];
  let prohibitedSeen = 0;
  let temporary = false;
  let missing = 0;
  for (const h of shuffleWithinPreference(hosts, random)) {
    const found = await addressesOf(h.host, resolver);
    if (found.failure === 'temporary') temporary = true;
    if (found.addresses.length === 0) missing++;
    for (const address of found.addresses) {
      if (opts.prohibited.has(address)) prohibitedSeen++;
      else targets.push({ host: h.host, preference: h.preference, address, port: h.port });
    }
  }
  if (targets.length > 0) return targets;
  if (temporary) {
    throw new ImpulseError('MX_LOOKUP_FAILED', reply(451, '4.4.3', `[internal] address lookup for the MX hosts of ${domain} failed temporarily`));
  }
  if (prohibitedSeen > 0) {
    throw new ImpulseError('PROHIBITED_IP', reply(551, '5.4.6', `[internal] every MX address of ${domain} is prohibited (private/loopback address)`));
  }
  throw new ImpulseError('NO_ADDRESS', reply(550, '5.4.4', `[internal] no address found for the ${missing} MX host(s) of ${domain}`));
}
