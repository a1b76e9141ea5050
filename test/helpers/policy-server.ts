// An MTA-STS policy host on a loopback address: HTTPS on port 443 (RFC 8461 fixes it), a
// certificate from the test CA for whichever mta-sts.<domain> the client names (SNI), and per
// policy domain the answer to serve: a policy file, another status or media type.
import { type Server, createServer } from 'node:https';
import { type SecureContext, createSecureContext } from 'node:tls';
import type { TestCa } from './tls.js';

export interface PolicyAnswer {
  body: string;
  status?: number;
  contentType?: string;
  /** Answers with a certificate for another name, as a misconfigured host would. */
  wrongCertificate?: boolean;
}

export interface PolicyServer {
  address: string;
  /** Sets what `https://mta-sts.<domain>/.well-known/mta-sts.txt` answers; absent domains get 404. */
  serve(domain: string, answer: PolicyAnswer): void;
  /** Host names asked for, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** A policy file as RFC 8461 §3.2 writes one. */
export function policyText(mode: 'enforce' | 'testing' | 'none', mx: string[], maxAge = 86400): string {
  return ['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), `max_age: ${maxAge}`, ''].join('\r\n');
}

export async function startPolicyServer(address: string, ca: TestCa): Promise<PolicyServer> {
  const answers = new Map<string, PolicyAnswer>();
  const contexts = new Map<string, SecureContext>();
  const contextFor = (name: string): SecureContext => {
    let ctx = contexts.get(name);
    if (!ctx) {
      const leaf = ca.sign(name);
      ctx = createSecureContext({ key: leaf.key, cert: leaf.cert });
      contexts.set(name, ctx);
    }
    return ctx;
  };
  const requests: string[] = [];
  const server: Server = createServer({
    SNICallback: (servername, cb) => {
      const domain = servername.replace(/^mta-sts\./, '');
      cb(null, contextFor(answers.get(domain)?.wrongCertificate ? `other.${domain}` : servername));
    },
  }, (req, res) => {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    requests.push(host);
    const answer = answers.get(host.replace(/^mta-sts\./, ''));
    if (!answer || req.url !== '/.well-known/mta-sts.txt') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(answer.status ?? 200, { 'content-type': answer.contentType ?? 'text/plain' }).end(answer.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(443, address, () => resolve());
  });
  return {
    address,
    serve: (domain, answer) => void answers.set(domain, answer),
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
