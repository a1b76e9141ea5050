// Fetches a policy domain's MTA-STS policy file (RFC 8461 §3.3): `https://mta-sts.<domain>/
// .well-known/mta-sts.txt`, its host resolved through Impulse's own resolver, its certificate
// checked against the CAs outbound TLS trusts (tls-trust.ts); no redirects, text/plain only,
// at most 64 KiB, within a deadline. mailauth's fetchPolicy is not used: it takes neither a CA
// list nor these limits.
import type { LookupFunction } from 'node:net';
import { request } from 'node:https';
import type { SecureContext } from 'node:tls';
import { type DnsResolver, classifyLookupError } from '../dns/resolver.js';
import { StsError } from './policy.js';

/** RFC 8461 §3.3: policies SHOULD NOT be larger than 64 KiB. */
const MAX_POLICY_BYTES = 64 * 1024;

/** Errors of the TLS layer: the certificate of the policy host could not be trusted (RFC 8460's sts-webpki-invalid). */
const CERTIFICATE_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY|ERR_TLS_CERT_ALTNAME_INVALID/;

interface PolicyFetchOptions {
  resolver: DnsResolver;
  /** CAs trusted (undefined: Node's default roots and NODE_EXTRA_CA_CERTS). */
  trust: SecureContext | undefined;
  /** Whole fetch, DNS to last byte. */
  timeoutMs: number;
}

/** A function fetching the policy text of a domain; throws StsError. */
export type PolicyFetcher = (domain: string) => Promise<string>;

async function addressesOf(host: string, resolver: DnsResolver): Promise<string[]> {
  try {
    return (await resolver.resolve4(host)).map((r) => r.address);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? classifyLookupError(err);
    throw new StsError('sts-policy-fetch-error', `cannot resolve ${host}: ${code}`);
  }
}

export function httpsPolicyFetcher(opts: PolicyFetchOptions): PolicyFetcher {
  return async (domain) => {
    const host = `mta-sts.${domain}`;
    const url = `https://${host}/.well-known/mta-sts.txt`;
    const addresses = await addressesOf(host, opts.resolver);
    const lookup: LookupFunction = (_name, options, callback) => {
      // net.connect asks for every address when it may try them in turn (autoSelectFamily).
      if (options.all) (callback as (e: null, a: Array<{ address: string; family: number }>) => void)(null, addresses.map((address) => ({ address, family: 4 })));
      else callback(null, addresses[0]!, 4);
    };
    return new Promise<string>((resolve, reject) => {
      const fail = (resultType: 'sts-policy-fetch-error' | 'sts-webpki-invalid', why: string) => {
        clearTimeout(deadline);
        req.destroy();
        reject(new StsError(resultType, `${url}: ${why}`));
      };
      // A server trickling its answer must not hold the discovery (and the domain's mail) for ever.
      const deadline = setTimeout(() => fail('sts-policy-fetch-error', `no complete answer within ${opts.timeoutMs} ms`), opts.timeoutMs);
      const req = request({
        host, servername: host, port: 443, path: '/.well-known/mta-sts.txt', method: 'GET', lookup, agent: false,
        ...(opts.trust ? { secureContext: opts.trust } : {}), rejectUnauthorized: true, headers: { accept: 'text/plain' },
      }, (res) => {
        const status = res.statusCode ?? 0;
        // RFC 8461 §3.3: redirects MUST NOT be followed; any other answer than 200 is no policy.
        if (status !== 200) return fail('sts-policy-fetch-error', `HTTP status ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}`);
        const type = (res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (type !== 'text/plain') return fail('sts-policy-fetch-error', `media type ${type || 'missing'}, not text/plain`);
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_POLICY_BYTES) fail('sts-policy-fetch-error', `policy larger than ${MAX_POLICY_BYTES} bytes`);
          else chunks.push(chunk);
        });
        res.on('end', () => {
          clearTimeout(deadline);
          resolve(Buffer.concat(chunks).toString('utf8'));
        });
        res.on('error', (err) => fail('sts-policy-fetch-error', err.message));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(deadline);
        const certificate = CERTIFICATE_ERRORS.test(err.code ?? '');
        reject(new StsError(certificate ? 'sts-webpki-invalid' : 'sts-policy-fetch-error',
          `${url}: ${certificate ? 'certificate not trusted: ' : ''}${err.message}`));
      });
      req.end();
    });
  };
}
