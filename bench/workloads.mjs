// The workloads, as the shared harness defines them for Postfix: N messages of SIZE bytes, one
// recipient each, spread round-robin over D domains d0.test … d{D-1}.test, injected over C
// connections. Each entry says where the domains' MX hosts are (the DNS zone), which sink
// addresses answer, the daemon config it needs (from the run's figures) and its default figures;
// every default can be overridden by a flag.
const SINK = '127.0.0.2';
const TARPIT = '127.0.0.5';
const LIMITED = '127.0.0.6';
export const SLOW_DOMAIN = 'slow.test';
export const HELD_DOMAIN = 'held.test';

const base = { n: 20000, size: 5120, conns: 20, domains: 50 };
const W5_HOSTS = Array.from({ length: 50 }, (_, j) => `127.0.0.${10 + j}`);
// W7's connections spread over ten destination addresses, so that none takes more than a tenth of
// the source ports a destination address and port may be reached from.
const SILENT_HOSTS = Array.from({ length: 10 }, (_, j) => `127.0.0.${70 + j}`);

/** Recipient of message `seq`: the harness's u<k/D mod 1000>@d<k mod D>.test. */
export const spreadRecipient = (domains) => (seq) => `u${Math.floor(seq / domains) % 1000}@d${seq % domains}.test`;

function zone(domains, mxOf, addressOf, mxCount) {
  const z = {};
  for (let i = 0; i < domains; i++) z[`d${i}.test`] = { mx: [{ preference: 10, exchange: mxOf(i) }] };
  for (let j = 0; j < mxCount; j++) z[`mx${j}.bench.test`] = { a: [addressOf(j)] };
  return z;
}
const oneMx = (domains) => zone(domains, () => 'mx0.bench.test', () => SINK, 1);

export const WORKLOADS = {
  W0: {
    about: 'harness ceiling: the injector straight into the sink, no daemon',
    defaults: base,
    daemon: false,
    sinkHosts: [SINK],
    zone: oneMx,
  },
  W1: {
    about: '50 domains, every MX on one sink host',
    defaults: base,
    daemon: true,
    sinkHosts: [SINK],
    zone: oneMx,
  },
  W2: {
    about: '1,000 domains over 3 MX hosts (domain i -> mx{i%3}.bench.test)',
    defaults: { ...base, domains: 1000 },
    daemon: true,
    sinkHosts: [SINK, '127.0.0.3', '127.0.0.4'],
    zone: (domains) => zone(domains, (i) => `mx${i % 3}.bench.test`, (j) => `127.0.0.${2 + j}`, 3),
  },
  W3: {
    about: `head-of-line: a backlog for tarpitted ${SLOW_DOMAIN} queued first, then W1`,
    defaults: { ...base, backlog: 100000, tarpitMs: 5000 },
    daemon: true,
    sinkHosts: [SINK, TARPIT],
    tarpitHosts: [TARPIT],
    zone: (domains) => ({
      ...oneMx(domains),
      [SLOW_DOMAIN]: { mx: [{ preference: 10, exchange: `mx.${SLOW_DOMAIN}` }] },
      [`mx.${SLOW_DOMAIN}`]: { a: [TARPIT] },
    }),
  },
  W4: {
    about: `queue scale: N queued for suspended ${HELD_DOMAIN}, then resumed and drained`,
    defaults: { ...base, n: 1000000, holdS: 10, drainS: 600 },
    daemon: true,
    sinkHosts: [SINK],
    zone: () => ({
      [HELD_DOMAIN]: { mx: [{ preference: 10, exchange: 'mx0.bench.test' }] },
      'mx0.bench.test': { a: [SINK] },
    }),
  },
  W5: {
    about: 'real receivers: 500 domains over 50 MX hosts (127.0.0.10-59), every greeting 150 ms late, every end of DATA answered 400 ms late',
    defaults: { ...base, n: 10000, domains: 500, greetMs: 150, dataMs: 400 },
    daemon: true,
    sinkHosts: W5_HOSTS,
    latencyHosts: W5_HOSTS,
    zone: (domains) => zone(domains, (i) => `mx${i % W5_HOSTS.length}.bench.test`, (j) => W5_HOSTS[j], W5_HOSTS.length),
  },
  W6: {
    about: 'adaptive: one domain, its MX on a sink address that accepts at most R msg/s per source address',
    // 6,000 at 50 msg/s take two minutes at best: long enough for a sender to settle, short
    // enough to run with and without a setting several times over.
    defaults: { ...base, n: 6000, domains: 1, limitRate: 50 },
    daemon: true,
    sinkHosts: [LIMITED],
    rateLimitHosts: [LIMITED],
    // Mail a 421 deferred comes back in seconds rather than after the default 20 minutes, so the
    // run ends with everything delivered; --config overrides these like any other key.
    config: () => ({ retry_interval: '5s', max_retry_interval: '30s' }),
    zone: (domains) => zone(domains, () => 'mx0.bench.test', () => LIMITED, 1),
  },
  W7: {
    about: 'open connections: N messages to D domains whose MX hosts (on 127.0.0.70-79) accept and never greet, one connection each, held open',
    // 30 s holds one renewal of the held jobs' locks (every 3/8 of job_lock_timeout's 60 s).
    defaults: { ...base, n: 10000, domains: 10, holdS: 30, timeoutS: 120 },
    daemon: true,
    sinkHosts: [],
    silentHosts: SILENT_HOSTS,
    // Every message held at once (the window parks new mail once 90% of it is held: windowLimit,
    // src/scheduler/policy.ts) and a connection for each: the connection goal never passes a
    // queue's messages, and a limit of twice them puts the curve above that.
    config: ({ n, domains }) => ({
      max_ready: Math.ceil(n / domains),
      max_active_messages: Math.ceil(n / 0.9) + 1,
      domains: Object.fromEntries(Array.from({ length: domains }, (_, i) => {
        const messages = Math.floor(n / domains) + (i < n % domains ? 1 : 0);
        return [`d${i}.test`, { max_outbound_connections: 2 * messages }];
      })),
    }),
    // A domain per MX host name, so that no two domains share a connection goal (a site's).
    zone: (domains) => zone(domains, (i) => `mx${i}.bench.test`, (j) => SILENT_HOSTS[j % SILENT_HOSTS.length], domains),
  },
};
