// Certificates made by openssl for each test run, so TLS is exercised with real keys and nothing
// secret lives in the repository: self-signed leaves, and a test CA that signs leaves for a DNS
// name, valid or long expired.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeOnExit } from './cleanup.js';

export type TestCertificate = { key: Buffer; cert: Buffer; keyPath: string; certPath: string };

export type TestCa = {
  certPath: string;
  /** A leaf for `dnsName` (CN and subjectAltName); `expired` makes one valid only for a day in 2020. */
  sign(dnsName: string, opts?: { expired?: boolean }): TestCertificate;
};

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(args: string[], cwd?: string): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], ...(cwd ? { cwd } : {}) });
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

export function makeCa(commonName = 'Impulse Test CA'): TestCa {
  const dir = tempDir();
  mkdirSync(join(dir, 'db'));
  writeFileSync(join(dir, 'db', 'index.txt'), '');
  writeFileSync(join(dir, 'db', 'serial'), '1000\n');
  writeFileSync(join(dir, 'ca.cnf'), CA_CONFIG);
  const certPath = join(dir, 'ca.pem');
  openssl([
    'req', '-x509', ...EC_KEY, '-days', '2', '-subj', `/CN=${commonName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', join(dir, 'ca.key'), '-out', certPath,
  ]);
  return {
    certPath,
    sign(dnsName, opts = {}) {
      const leaf = mkdtempSync(join(dir, 'leaf-'));
      const csr = join(leaf, 'req.csr');
      openssl(['req', ...EC_KEY, '-subj', `/CN=${dnsName}`, '-addext', `subjectAltName=DNS:${dnsName}`, '-keyout', join(leaf, 'key.pem'), '-out', csr]);
      const validity = opts.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '2'];
      openssl([
        'ca', '-batch', '-notext', '-config', join(dir, 'ca.cnf'), '-cert', certPath, '-keyfile', join(dir, 'ca.key'),
        ...validity, '-in', csr, '-out', join(leaf, 'cert.pem'),
      ], dir);
      return certificateIn(leaf);
    },
  };
}
