// The certificate chain a TLS server presented, its own certificate first, for daneVerify.
//
// On Node 20 the issuers of getPeerX509Certificate() are the chain as presented, but that call
// takes the certificates out of the connection's state (a second call, or getPeerCertificate()
// after it, finds none), so this walks getPeerCertificate(true), which copies them. That walk
// goes from each certificate to its issuer among those presented, so a chain sent out of order
// mostly comes back in order (node stops early on some: leaf, root, intermediate loses the root);
// when it ends short of a self-signed certificate, node adds the issuer from the connection's
// trusted CAs if it has one. daneVerify checks every signature up to the certificate a record
// matched, so a certificate that came from there is as good as one the server sent.
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

export function peerChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  // A self-signed certificate is its own issuerCertificate: the walk ends at a certificate already seen.
  for (let c = socket.getPeerCertificate(true); c?.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    chain.push(new X509Certificate(c.raw));
  }
  return chain;
}
