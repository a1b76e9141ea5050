// The CAs outbound TLS verification and MTA-STS policy fetches trust: Node's bundled roots,
// NODE_EXTRA_CA_CERTS and the PEM certificates of tls_ca_file. Read once at start, so a missing or broken file stops the daemon with its name
// instead of deferring every verified delivery later.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type SecureContext, createSecureContext, rootCertificates } from 'node:tls';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** The PEM certificates of `file`, each checked; `what` names the file in errors. */
function certificatesIn(file: string, what: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
  const pems = text.match(PEM_CERTIFICATE) ?? [];
  if (pems.length === 0) throw new Error(`${what} ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  pems.forEach((pem, i) => {
    try {
      new X509Certificate(pem);
    } catch (err) {
      throw new Error(`${what} ${file}: certificate ${i + 1} of ${pems.length} is invalid: ${(err as Error).message}`);
    }
  });
  return pems;
}

/**
 * A TLS context trusting the bundled roots, NODE_EXTRA_CA_CERTS and the certificates in
 * `caFile`; undefined without a file, so Node's default context (which honours
 * NODE_EXTRA_CA_CERTS itself) is used. An explicit `ca` list replaces Node's store, so the extra
 * certificates are added here as Node would. Built once: a `ca` list passed per connection would
 * be parsed again on every handshake.
 */
export function loadTrust(caFile: string | undefined, env: NodeJS.ProcessEnv = process.env): SecureContext | undefined {
  if (caFile === undefined) return undefined;
  const extra = env.NODE_EXTRA_CA_CERTS ? certificatesIn(env.NODE_EXTRA_CA_CERTS, 'NODE_EXTRA_CA_CERTS') : [];
  return createSecureContext({ ca: [...rootCertificates, ...extra, ...certificatesIn(caFile, 'tls_ca_file')] });
}
