// Certificates made by openssl for each test run, so TLS is exercised with real keys and nothing
// secret lives in the repository: self-signed leaves, and a test CA that signs leaves for a DNS
// name, valid or long expired, and intermediate CAs; and TLSA data computed by openssl itself.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeOnExit } from './cleanup.js';

export type TestCertificate = { key: Buffer; cert: Buffer; keyPath: string; certPath: string };

export type TestCa = {
  certPath: string;
  /** PEM. */
  cert: Buffer;
  /** A leaf for `dnsName` (CN and subjectAltName; several names: the first as CN, all as subjectAltName); `expired` makes one valid only for a day in 2020. */
  sign(dnsName: string | readonly string[], opts?: { expired?: boolean }): TestCertificate;
  /** A CA signed by this one; `keyUsage` other than keyCertSign makes one that may not sign certificates. */
  intermediate(commonName: string, opts?: { keyUsage?: string }): TestCa;
};

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function caExtensions(keyUsage = 'keyCertSign,cRLSign'): string[] {
  return ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', `keyUsage=critical,${keyUsage}`];
}

function openssl(args: string[], cwd?: string): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], ...(cwd ? { cwd } : {}) });
}

function opensslOutput(args: string[], input: Buffer): Buffer {
  return execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/**
 * The certificate association data of a TLSA record for `certPem` (RFC 6698 §2.1), as openssl
 * computes it: selector 0 the DER certificate, 1 its public key; matching type 0 as is, 1
 * SHA2-256, 2 SHA2-512.
 */
export function tlsaAssociation(certPem: Buffer, selector: number, matchingType: number): Buffer {
  const selected = selector === 0
    ? opensslOutput(['x509', '-outform', 'DER'], certPem)
    : opensslOutput(['pkey', '-pubin', '-outform', 'DER'], opensslOutput(['x509', '-noout', '-pubkey'], certPem));
  if (matchingType === 0) return selected;
  return opensslOutput(['dgst', matchingType === 1 ? '-sha256' : '-sha512', '-binary'], selected);
}

function certificateIn(dir: string): TestCertificate {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  return { key: readFileSync(keyPath), cert: readFileSync(certPath), keyPath, certPath };
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'impulse-cert-'));
  removeOnExit(dir);
  return dir;
}

export function makeCertificate(commonName: string): TestCertificate {
  const dir = tempDir();
  openssl([
    'req', '-x509', ...EC_KEY, '-days', '2', '-subj', `/CN=${commonName}`,
    '-addext', `subjectAltName=DNS:${commonName}`, '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ]);
  return certificateIn(dir);
}

/** A leaf for `dnsName` signed by `issuer`, which need not be a CA: a chain no verifier may accept. */
export function signedBy(issuer: TestCertificate, dnsName: string): TestCertificate {
  const dir = tempDir();
  const csr = join(dir, 'req.csr');
  openssl(['req', ...EC_KEY, '-subj', `/CN=${dnsName}`, '-keyout', join(dir, 'key.pem'), '-out', csr]);
  writeFileSync(join(dir, 'ext.cnf'), `subjectAltName=DNS:${dnsName}\n`);
  openssl([
    'x509', '-req', '-in', csr, '-CA', issuer.certPath, '-CAkey', issuer.keyPath, '-set_serial', '1', '-days', '2',
    '-extfile', join(dir, 'ext.cnf'), '-out', join(dir, 'cert.pem'),
  ]);
  return certificateIn(dir);
}

// `openssl ca` rather than `x509 -req`: it takes explicit start and end dates on every
// OpenSSL version, which an expired certificate needs. Its paths are relative to the CA's dir.
const CA_CONFIG = `[ca]
default_ca = test_ca
[test_ca]
database = db/index.txt
new_certs_dir = db
serial = db/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
`;

// `openssl ca` signs with the CA of the directory `dir` (ca.pem, ca.key and its database).
function caIn(dir: string): TestCa {
  const certPath = join(dir, 'ca.pem');
  const signRequest = (csr: string, out: string, validity: string[]): void => openssl([
    'ca', '-batch', '-notext', '-config', join(dir, 'ca.cnf'), '-cert', certPath, '-keyfile', join(dir, 'ca.key'),
    ...validity, '-in', csr, '-out', out,
  ], dir);
  return {
    certPath,
    cert: readFileSync(certPath),
    sign(dnsName, opts = {}) {
      const leaf = mkdtempSync(join(dir, 'leaf-'));
      const csr = join(leaf, 'req.csr');
      const names = typeof dnsName === 'string' ? [dnsName] : dnsName;
      const san = names.map((n) => `DNS:${n}`).join(',');
      openssl(['req', ...EC_KEY, '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${san}`, '-keyout', join(leaf, 'key.pem'), '-out', csr]);
      const validity = opts.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '2'];
      signRequest(csr, join(leaf, 'cert.pem'), validity);
      return certificateIn(leaf);
    },
    intermediate(commonName, opts = {}) {
      const sub = caDir();
      const csr = join(sub, 'req.csr');
      openssl(['req', ...EC_KEY, '-subj', `/CN=${commonName}`, ...caExtensions(opts.keyUsage), '-keyout', join(sub, 'ca.key'), '-out', csr]);
      signRequest(csr, join(sub, 'ca.pem'), ['-days', '2']);
      return caIn(sub);
    },
  };
}

function caDir(): string {
  const dir = tempDir();
  mkdirSync(join(dir, 'db'));
  writeFileSync(join(dir, 'db', 'index.txt'), '');
  writeFileSync(join(dir, 'db', 'serial'), '1000\n');
  writeFileSync(join(dir, 'ca.cnf'), CA_CONFIG);
  return dir;
}

export function makeCa(commonName = 'Impulse Test CA'): TestCa {
  const dir = caDir();
  openssl(['req', '-x509', ...EC_KEY, '-days', '2', '-subj', `/CN=${commonName}`, ...caExtensions(), '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem')]);
  return caIn(dir);
}
