// When a session opened for one domain may carry the mail of a sibling domain with its own TLS
// policy: never over less than the sibling's own connection would have insisted on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ScopedTls, type TlsOutcome, tlsCarries } from '../../src/delivery/tls-policy.js';
import type { TlsRequirement } from '../../src/delivery/tls-requirement.js';

type Session = { secure: boolean; tls: TlsOutcome };

const plain: Session = { secure: false, tls: { verified: 'no' } };
const fellBack: Session = { secure: false, tls: { verified: 'no', fallback: 'wrong version number' } };
const unverified: Session = { secure: true, tls: { verified: 'no' } };
const caVerified: Session = { secure: true, tls: { verified: 'ca' } };
const hostVerified: Session = { secure: true, tls: { verified: 'host' } };

const options: TlsRequirement = { kind: 'options' };
const ref = { type: 'sts' as const, domain: 'sibling.test', id: 'p1' };

const policy = (tls: ScopedTls['tls'], verify: ScopedTls['tls_verify'], fallback = true): ScopedTls =>
  ({ tls, tls_verify: verify, tls_ifavailable_fallback: fallback });

test('a session carries a sibling\'s mail only when it meets the sibling\'s TLS policy', () => {
  const table: Array<[string, Session, ScopedTls, boolean]> = [
    ['tls: no takes any session', plain, policy('no', 'host'), true],
    ['opportunistic TLS takes a plain session', plain, policy('ifavailable', 'no'), true],
    ['required TLS refuses a plain session', plain, policy('required', 'no'), false],
    ['a verifying domain cannot tell a plain session had no STARTTLS to offer', plain, policy('ifavailable', 'ca'), false],
    ['a fallback session suits a domain allowing fallback', fellBack, policy('ifavailable', 'no', true), true],
    ['a fallback session does not suit a domain refusing it', fellBack, policy('ifavailable', 'no', false), false],
    ['unverified TLS suits required TLS without verification', unverified, policy('required', 'no'), true],
    ['unverified TLS does not suit tls_verify: ca', unverified, policy('ifavailable', 'ca'), false],
    ['a trusted chain suits tls_verify: ca', caVerified, policy('required', 'ca'), true],
    ['a trusted chain does not suit tls_verify: host', caVerified, policy('required', 'host'), false],
    ['a verified host name suits tls_verify: ca', hostVerified, policy('required', 'ca'), true],
    ['a verified host name suits a sibling with that MX name', hostVerified, policy('required', 'host'), true],
  ];
  for (const [what, session, o, expected] of table) {
    assert.equal(tlsCarries(session, 'mx.shared.test', o, ['mx.shared.test'], options), expected, what);
  }
});

test('host verification proves only the name it was made for: a sibling reached by address alone is refused', () => {
  assert.equal(tlsCarries(hostVerified, 'mx.shared.test', policy('required', 'host'), ['mx.other-name.test'], options), false);
  assert.equal(tlsCarries(hostVerified, 'mx.shared.test', policy('required', 'ca'), ['mx.other-name.test'], options), true);
});

test('a sibling\'s published policy outranks its options: MTA-STS enforce takes only a host-verified session, DANE only one it vouched for; testing goes by the options', () => {
  const enforce: TlsRequirement = { kind: 'sts-enforce', policy: ref };
  const testing: TlsRequirement = { kind: 'sts-testing', policy: ref, mxAllowed: false };
  const refused: TlsRequirement = { kind: 'refused', policy: ref, resultType: 'validation-failure', reply: { code: 451, enhanced: '4.7.5', text: 'x' } };
  const lax = policy('ifavailable', 'no');
  const tlsa = { type: 'tlsa' as const, domain: 'sibling.test', id: '_25._tcp.mx.shared.test' };
  const dane: TlsRequirement = { kind: 'dane', policy: tlsa, records: [] };
  const daneVerified: Session = { secure: true, tls: { verified: 'no', policy: { policy: tlsa, mode: 'enforce', result: 'success' } } };
  const table: Array<[string, Session, TlsRequirement, boolean, ScopedTls?]> = [
    ['enforce refuses a plain session its options would take', plain, enforce, false],
    ['enforce refuses TLS verified only to a CA', caVerified, enforce, false],
    ['enforce takes a host-verified session', hostVerified, enforce, true],
    ['testing takes a session enforce would refuse when its options do (the site reports the failure)', plain, testing, true],
    ['testing takes a verified session to an MX its policy does not allow, as its options do', hostVerified, testing, true],
    ['testing refuses what its options refuse', plain, testing, false, policy('required', 'no')],
    ['a host the policy rules out carries nothing', hostVerified, refused, false],
    ['DANE refuses a host-verified session DANE did not vouch for', hostVerified, dane, false],
    ['DANE takes a session it vouched for, whatever the options', daneVerified, dane, true],
    ['DANE with unusable records takes any encrypted session', unverified, { kind: 'dane-encrypt', policy: tlsa }, true],
    ['DANE with unusable records refuses a plain one', plain, { kind: 'dane-encrypt', policy: tlsa }, false],
    ['DANE refuses a session vouched for by another host\'s records', daneVerified, { ...dane, policy: { ...tlsa, id: '_25._tcp.mx.other.test' } } as TlsRequirement, false],
  ];
  for (const [what, session, requirement, expected, o] of table) {
    assert.equal(tlsCarries(session, 'mx.shared.test', o ?? lax, ['mx.shared.test'], requirement), expected, what);
  }
  assert.equal(tlsCarries(hostVerified, 'mx.shared.test', lax, ['mx.other-name.test'], enforce), false,
    'enforce: a session verified for a name the sibling shares only by address');
});
