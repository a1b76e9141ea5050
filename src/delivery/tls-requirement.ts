// What TLS a connection to one MX host must have, given what the destination publishes (DANE
// TLSA records, RFC 7672; an MTA-STS policy, RFC 8461) and the scoped options that turn each on:
// the one place each policy's rules, and DANE's precedence over MTA-STS (RFC 8461 §2), are
// applied to a host. Pure, so every case is a row of a table test.
import { type Reply, reply } from '../core/reply.js';
import type { DnssecStatus } from '../dane/dnssec.js';
import { type TlsaLookup, tlsaName } from '../dane/lookup.js';
import type { TlsaRecord } from '../dns/client.js';
import type { StsState } from '../mta-sts/discovery.js';
import { mxAllowed } from '../mta-sts/policy.js';

/** What DNSSEC says of a destination: its MX RRset, and per MX host its TLSA records and address records. */
export interface DaneState {
  mx: DnssecStatus;
  /** By MX host name; empty unless the MX RRset is secure (DANE applies only then, RFC 7672 §2.2.1). */
  hosts: Record<string, { tlsa: TlsaLookup; address: DnssecStatus }>;
}

/** What was learnt of a destination's TLS policies at its last lookup; a part is absent when no scope asked for it. */
export interface DestinationTls {
  sts?: StsState;
  dane?: DaneState;
}

/** RFC 8460's names for why a session failed a policy. */
export type TlsResultType =
  | 'starttls-not-supported' | 'certificate-host-mismatch' | 'certificate-expired' | 'certificate-not-trusted' | 'validation-failure'
  | 'tlsa-invalid' | 'dnssec-invalid' | 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid';

/** The policy a session is checked under, named as RFC 8460 does (sts: MTA-STS, tlsa: DANE); `domain` is the policy domain. */
interface PolicyRef {
  type: 'sts' | 'tlsa';
  domain: string;
  /** The MTA-STS policy's id, or the TLSA record name, for the log. */
  id: string;
}

export type TlsRequirement =
  /** No published policy applies: the tls, tls_verify and tls_ifavailable_fallback options decide. */
  | { kind: 'options' }
  /** DANE: STARTTLS, and a certificate chain matching one of these usable TLSA records, else the mail is deferred. */
  | { kind: 'dane'; policy: PolicyRef; records: TlsaRecord[] }
  /** DANE with no usable record (RFC 7672 §2.2): STARTTLS is mandatory, the certificate unchecked (Postfix's "encrypt"). */
  | { kind: 'dane-encrypt'; policy: PolicyRef }
  /** MTA-STS enforce: STARTTLS and a certificate valid for the MX name, else the mail is deferred. */
  | { kind: 'sts-enforce'; policy: PolicyRef }
  /** MTA-STS testing: delivered as the options say; what enforce would have refused is logged and counted. */
  | { kind: 'sts-testing'; policy: PolicyRef; mxAllowed: boolean }
  /** This host may not be used at all. */
  | { kind: 'refused'; policy: PolicyRef; resultType: TlsResultType; reply: Reply };

/** The options that turn each policy on for a binding × domain. */
export interface PolicySwitches {
  mta_sts: boolean;
  dane: boolean;
}

/** What DANE asks of `host`, or undefined when DANE does not apply to it and MTA-STS or the options decide. */
function daneRequirement(domain: string, host: string, port: number, dane: DaneState): TlsRequirement | undefined {
  const ref: PolicyRef = { type: 'tlsa', domain, id: tlsaName(host, port) };
  if (dane.mx.kind === 'failed') {
    // A validating resolver answers SERVFAIL for bogus data: the MX records may be forged, so no MX is trusted.
    return { kind: 'refused', policy: ref, resultType: 'dnssec-invalid', reply: reply(451, '4.7.5', `[internal] DANE: ${dane.mx.reason}`) };
  }
  if (dane.mx.kind !== 'secure') return undefined;
  const h = dane.hosts[host];
  if (!h) return undefined;
  if (h.tlsa.kind === 'secure') return { kind: 'dane', policy: ref, records: h.tlsa.records };
  if (h.tlsa.kind === 'secure-unusable') return { kind: 'dane-encrypt', policy: ref };
  // RFC 7672 §2.2: a failed TLSA lookup in a signed zone may hide records an attacker removed.
  if (h.tlsa.kind === 'failed' && h.address.kind !== 'insecure') {
    return {
      kind: 'refused', policy: ref, resultType: 'dnssec-invalid',
      reply: reply(451, '4.7.5', `[internal] DANE: ${h.tlsa.reason}, and ${host} is in a signed zone`),
    };
  }
  return undefined;
}

export function requirementFor(domain: string, host: string, port: number, tls: DestinationTls, o: PolicySwitches): TlsRequirement {
  if (o.dane && tls.dane) {
    const dane = daneRequirement(domain, host, port, tls.dane);
    if (dane) return dane;
  }
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
