// --mta-sts: every recipient domain publishes an MTA-STS policy (RFC 8461) in mode testing that
// names its MX hosts: the `_mta-sts` TXT record in the run's DNS, and the policy file served over
// HTTPS by a policy host on loopback, whose certificate comes from a CA made for the run that the
// daemon trusts through tls_ca_file.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { policyText } from '../dist/test/helpers/policy-server.js';

// Port 443, as RFC 8461 fixes it (binding it takes root or CAP_NET_BIND_SERVICE), on an address
// no workload's MX host uses.
const POLICY_HOST = '127.0.0.7';
// Every run starts with an empty cache, so one id serves: the first lookup of each domain fetches.
const POLICY_ID = 'bench1';
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A CA and one certificate from it naming every host in `names`, in `dir`. One for all, not one
 * per name as the tests' policy server makes them when asked: that would run openssl on the
 * runner's event loop, which the DNS server and the injector share, while the run is measured.
 */
function certificates(dir, names) {
  openssl([
    'req', '-x509', ...EC_KEY, '-days', '2', '-subj', '/CN=Impulse Bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', 'ca.key', '-out', 'ca.pem',
  ], dir);
  openssl(['req', ...EC_KEY, '-subj', `/CN=${names[0]}`, '-keyout', 'policy.key', '-out', 'policy.csr'], dir);
  writeFileSync(join(dir, 'policy.ext'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`);
  openssl(['x509', '-req', '-in', 'policy.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '1', '-days', '2', '-extfile', 'policy.ext', '-out', 'policy.pem'], dir);
  return { caFile: join(dir, 'ca.pem'), key: readFileSync(join(dir, 'policy.key')), cert: readFileSync(join(dir, 'policy.pem')) };
}

/**
 * Publishes a policy for each of `domains`, allowing the MX hosts `zone` gives it, with files in
 * `dir`. Resolves with the DNS records to add to the zone, the daemon's config keys, the count of
 * policy requests served so far, and a close.
 */
export async function publishPolicies({ dir, zone, domains }) {
  const policies = new Map(domains.map((d) => [`mta-sts.${d}`, policyText('testing', zone[d].mx.map((m) => m.exchange))]));
  const { caFile, key, cert } = certificates(dir, [...policies.keys()]);
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
    config: { tls_ca_file: caFile },
    requests: () => requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
