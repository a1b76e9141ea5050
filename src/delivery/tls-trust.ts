// The CAs outbound TLS verification trusts: Node's bundled roots plus the PEM certificates of
// tls_ca_file. Read once at start, so a missing or broken file stops the daemon with its name
// instead of deferring every verified delivery later.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type SecureContext, createSecureContext, rootCertificates } from 'node:tls';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/**
 * A TLS context trusting the bundled roots and the certificates in `caFile`; undefined without
 * a file, so Node's default context (which also honours NODE_EXTRA_CA_CERTS) is used.
 * Built once: a `ca` list passed per connection would be parsed again on every handshake.
 */
export function loadTrust(caFile: string | undefined): SecureContext | undefined {
  if (caFile === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(caFile, 'utf8');
  } catch (err) {
    throw new Error(`cannot read tls_ca_file ${caFile}: ${(err as Error).message}`);
  }
  const pems = text.match(PEM_CERTIFICATE) ?? [];
  if (pems.length === 0) throw new Error(`tls_ca_file ${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  pems.forEach((pem, i) => {
    try {
      new X509Certificate(pem);
    } catch (err) {
      throw new Error(`tls_ca_file ${caFile}: certificate ${i + 1} of ${pems.length} is invalid: ${(err as Error).message}`);
    }
  });
  return createSecureContext({ ca: [...rootCertificates, ...pems] });
}
