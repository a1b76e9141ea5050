// What TLS a connection to one MX host must have, given what the destination publishes (an
// MTA-STS policy, RFC 8461) and the scoped options that turn it on: the one place each policy's
// rules are applied to a host. Pure, so every case is a row of a table test.
import { type Reply, reply } from '../core/reply.js';
import type { StsState } from '../mta-sts/discovery.js';
import { mxAllowed } from '../mta-sts/policy.js';

/** What was learnt of a destination's TLS policies at its last lookup; a part is absent when no scope asked for it. */
export interface DestinationTls {
  sts?: StsState;
}

/** RFC 8460's names for why a session failed a policy. */
export type TlsResultType =
  | 'starttls-not-supported' | 'certificate-host-mismatch' | 'certificate-expired' | 'certificate-not-trusted' | 'validation-failure'
  | 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid';

/** The policy a session is checked under, named as RFC 8460 does; `domain` is the policy domain. */
interface PolicyRef {
  type: 'sts';
  domain: string;
  /** The policy's id (the TXT record's), for the log. */
  id: string;
}

export type TlsRequirement =
  /** No published policy applies: the tls, tls_verify and tls_ifavailable_fallback options decide. */
  | { kind: 'options' }
  /** MTA-STS enforce: STARTTLS and a certificate valid for the MX name, else the mail is deferred. */
  | { kind: 'sts-enforce'; policy: PolicyRef }
  /** MTA-STS testing: delivered as the options say; what enforce would have refused is logged and counted. */
  | { kind: 'sts-testing'; policy: PolicyRef; mxAllowed: boolean }
  /** This host may not be used at all. */
  | { kind: 'refused'; policy: PolicyRef; resultType: TlsResultType; reply: Reply };

/** The options that turn each policy on for a binding × domain. */
export interface PolicySwitches {
  mta_sts: boolean;
}

export function requirementFor(domain: string, host: string, tls: DestinationTls, o: PolicySwitches): TlsRequirement {
  const sts = tls.sts;
  if (o.mta_sts && sts?.kind === 'policy' && sts.policy.mode !== 'none') {
    const { policy } = sts;
    const ref: PolicyRef = { type: 'sts', domain, id: policy.id };
    const allowed = mxAllowed(host, policy.mx);
    if (policy.mode === 'testing') return { kind: 'sts-testing', policy: ref, mxAllowed: allowed };
    if (!allowed) {
      return {
        kind: 'refused', policy: ref, resultType: 'validation-failure',
        reply: reply(451, '4.7.5', `[internal] MX host ${host} is not allowed by the MTA-STS policy of ${domain} (mx: ${policy.mx.join(', ')})`),
      };
    }
    return { kind: 'sts-enforce', policy: ref };
  }
  return { kind: 'options' };
}

/** The RFC 8460 result type of a certificate Node's TLS client refused, from its error code. */
export function certificateResult(code: string | undefined): TlsResultType {
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return 'certificate-expired';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'certificate-host-mismatch';
  return 'certificate-not-trusted';
}

/** How an open session fared under the published policy it was opened under. */
export interface PolicyCheck {
  policy: PolicyRef;
  mode: 'enforce' | 'testing';
  result: 'success' | TlsResultType;
  /** Why it failed, in a few words; absent on success. */
  reason?: string;
}
