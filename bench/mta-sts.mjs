// --mta-sts: every recipient domain publishes an MTA-STS policy (RFC 8461) in mode testing that
// names its MX hosts: the `_mta-sts` TXT record in the run's DNS, and the policy file served over
// HTTPS by a policy host on loopback, whose certificate comes from a CA made for the run (the
// tests' CA) that the daemon trusts through tls_ca_file.
import { createServer } from 'node:https';
import { policyText } from '../dist/test/helpers/policy-server.js';
import { makeCa } from '../dist/test/helpers/tls.js';

// Port 443, as RFC 8461 fixes it (binding it takes root or CAP_NET_BIND_SERVICE), on an address
// no workload's MX host uses.
const POLICY_HOST = '127.0.0.7';
// Every run starts with an empty cache, so one id serves: the first lookup of each domain fetches.
const POLICY_ID = 'bench1';

/**
 * Publishes a policy for each of `domains`, allowing the MX hosts `zone` gives it. One certificate
 * names every policy host, made before the run: one per name on demand, as the tests' policy server
 * makes them, would run openssl on the runner's event loop, which the DNS server and the injector
 * share, while the run is measured. Resolves with the DNS records to add to the zone, the daemon's config keys, the count of
 * policy requests served so far, and a close.
 */
export async function publishPolicies({ zone, domains }) {
  const policies = new Map(domains.map((d) => [`mta-sts.${d}`, policyText('testing', zone[d].mx.map((m) => m.exchange))]));
  const ca = makeCa('Impulse Bench CA');
  const { key, cert } = ca.sign([...policies.keys()]);
  let requests = 0;
  const server = createServer({ key, cert }, (req, res) => {
    requests++;
    const policy = policies.get((req.headers.host ?? '').replace(/:\d+$/, ''));
    if (!policy || req.url !== '/.well-known/mta-sts.txt') return res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    res.writeHead(200, { 'content-type': 'text/plain' }).end(policy);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(443, POLICY_HOST, resolve);
  });
  const records = {};
  for (const d of domains) {
    records[`_mta-sts.${d}`] = { txt: [`v=STSv1; id=${POLICY_ID};`] };
    records[`mta-sts.${d}`] = { a: [POLICY_HOST] };
  }
  return {
    zone: records,
    config: { tls_ca_file: ca.certPath },
    requests: () => requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
