// An in-memory resolver for unit tests of the core: exact answers and errors with node's codes,
// no network. The end-to-end tests use a real DNS server instead.
import type { DnsResolver, MxRecord } from '../../src/dns/resolver.js';

function dnsError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/** Names absent from both tables are NXDOMAIN; a string value is the error code to fail with. */
export function memoryResolver(mx: Record<string, MxRecord[] | string>, a: Record<string, string[] | string>): DnsResolver {
  const answer = <T>(v: T | string | undefined): Promise<T> =>
    v === undefined ? Promise.reject(dnsError('ENOTFOUND')) : typeof v === 'string' ? Promise.reject(dnsError(v)) : Promise.resolve(v);
  return {
    resolveMx: (n) => answer(mx[n] ?? (a[n] ? 'ENODATA' : undefined)),
    resolve4: async (n) => (await answer<string[]>(a[n] ?? (mx[n] ? 'ENODATA' : undefined))).map((address) => ({ address, ttl: 300 })),
    resolveTxt: (n) => answer<string[][]>(mx[n] || a[n] ? 'ENODATA' : undefined),
  };
}

