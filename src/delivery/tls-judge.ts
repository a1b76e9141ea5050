// The verdict on an open session under the published policy it was opened for: DANE's is made
// here from the certificate chain (Node's TLS client knows nothing of TLSA records); an enforced
// MTA-STS policy's session succeeded by being open at all (anything less failed the handshake),
// and a policy in testing mode is judged here, after the fact, by the checks enforce would make.
import { type PeerCertificate, TLSSocket, checkServerIdentity } from 'node:tls';
import type { Socket } from 'node:net';
import { peerChain } from '../dane/chain.js';
import { daneVerify } from '../dane/verify.js';
import { type PolicyCheck, type TlsRequirement, certificateResult } from './tls-requirement.js';

export function judgeSession(requirement: TlsRequirement, socket: Socket | undefined, host: string): { policy?: PolicyCheck } {
  switch (requirement.kind) {
    case 'options':
    case 'refused':
      return {};
    case 'dane': {
      const base = { policy: requirement.policy, mode: 'enforce' as const };
      if (!(socket instanceof TLSSocket)) return { policy: { ...base, result: 'starttls-not-supported', reason: 'no TLS session' } };
      const verdict = daneVerify(requirement.records, peerChain(socket), [host]);
      return { policy: verdict.ok ? { ...base, result: 'success' } : { ...base, result: 'tlsa-invalid', reason: verdict.reason } };
    }
    case 'dane-encrypt':
    case 'sts-enforce':
      return { policy: { policy: requirement.policy, mode: 'enforce', result: 'success' } };
    case 'sts-testing': {
      const base = { policy: requirement.policy, mode: 'testing' as const };
      if (!requirement.mxAllowed) return { policy: { ...base, result: 'validation-failure', reason: `MX host ${host} is not in the policy's mx list` } };
      if (!(socket instanceof TLSSocket)) return { policy: { ...base, result: 'starttls-not-supported', reason: 'no TLS session' } };
      if (!socket.authorized) {
        const code = socket.authorizationError as unknown as string | undefined;
        return { policy: { ...base, result: certificateResult(code), reason: `certificate not trusted: ${code ?? 'unknown'}` } };
      }
      const mismatch = checkServerIdentity(host, socket.getPeerCertificate() as PeerCertificate);
      if (mismatch) return { policy: { ...base, result: 'certificate-host-mismatch', reason: mismatch.message } };
      return { policy: { ...base, result: 'success' } };
    }
  }
}
