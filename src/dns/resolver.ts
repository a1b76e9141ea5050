// The resolver the delivery path uses: node's c-ares resolver pointed at the configured servers.
// An interface so the core can be driven by a resolver of the test's choosing.
import { Resolver } from 'node:dns/promises';

export interface MxRecord {
  exchange: string;
  priority: number;
}

interface AddressRecord {
  address: string;
  /** Seconds. */
  ttl: number;
}

export interface DnsResolver {
  resolveMx(name: string): Promise<MxRecord[]>;
  resolve4(name: string): Promise<AddressRecord[]>;
  /** Each record as its character-strings (RFC 1035 §3.3.14), in the order served. */
  resolveTxt(name: string): Promise<string[][]>;
}

interface ResolverOptions {
  servers?: string[] | undefined;
  timeout: number;
  tries: number;
}

export function createResolver(opts: ResolverOptions): DnsResolver {
  const r = new Resolver({ timeout: opts.timeout, tries: opts.tries });
  if (opts.servers && opts.servers.length > 0) r.setServers(opts.servers);
  return {
    // Node.js 24 adds `type: 'MX'` to each record; the rest of the daemon sees one shape on every version.
    resolveMx: async (name) => (await r.resolveMx(name)).map(({ exchange, priority }) => ({ exchange, priority })),
    resolve4: (name) => r.resolve4(name, { ttl: true }),
    resolveTxt: (name) => r.resolveTxt(name),
  };
}

/** What a lookup failure means for delivery: the name does not exist, has no such record, or try later. */
type LookupFailure = 'nxdomain' | 'nodata' | 'temporary';

export function classifyLookupError(err: unknown): LookupFailure {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOTFOUND') return 'nxdomain';
  if (code === 'ENODATA') return 'nodata';
  return 'temporary';
}
