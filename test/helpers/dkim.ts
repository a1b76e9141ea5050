// DKIM keys made for a test (RSA-2048 and Ed25519 PEM files, their DNS TXT records), and a verifier
// that checks signatures against those records with mailauth's verifier.
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';

export interface TestDkimKey {
  domain: string;
  selector: string;
  file: string;
  /** `<selector>._domainkey.<domain>` */
  name: string;
  /** The key record published at `name`. */
  txt: string;
}

export function makeDkimKey(domain: string, selector: string, type: 'rsa' | 'ed25519', bits = 2048, dir = mkdtempSync(join(tmpdir(), 'impulse-dkim-'))): TestDkimKey {
  const { privateKey } = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: bits })
    : generateKeyPairSync('ed25519');
  const file = join(dir, `${domain}.${selector}.pem`);
  writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  // RFC 8463 §4.2: an Ed25519 record carries the bare 32-byte key, not its SubjectPublicKeyInfo.
  const txt = type === 'rsa' ? `v=DKIM1; k=rsa; p=${spki.toString('base64')}` : `v=DKIM1; k=ed25519; p=${spki.subarray(-32).toString('base64')}`;
  return { domain, selector, file, name: `${selector}._domainkey.${domain}`, txt };
}

export interface DkimResult {
  domain: string;
  selector: string;
  algorithm: string;
  result: string;
  /** The x= tag, as an ISO date; null without one. */
  expiresAfter: string | null;
}

/** What mailauth 4.13's verifier reports per signature, beyond its published types. */
interface VerifierResult {
  signingDomain?: string;
  selector?: string;
  algo?: string;
  expiresAfter?: string | null;
  status: { result: string };
}

/** Every DKIM-Signature of `message`, as mailauth's verifier judges it against `keys`' records. */
export async function verifyDkim(message: Buffer | string, keys: readonly TestDkimKey[]): Promise<DkimResult[]> {
  const records = new Map(keys.map((k) => [k.name, k.txt]));
  const { results } = await dkimVerify(Buffer.from(message), {
    resolver: async (name: string) => {
      const txt = records.get(name);
      if (txt === undefined) throw Object.assign(new Error(`no TXT at ${name}`), { code: 'ENOTFOUND' });
      return [[txt]];
    },
  });
  return (results as unknown as VerifierResult[]).filter((r) => r.signingDomain !== undefined).map((r) => ({
    domain: r.signingDomain ?? '', selector: r.selector ?? '', algorithm: r.algo ?? '', result: r.status.result,
    expiresAfter: r.expiresAfter ?? null,
  }));
}
