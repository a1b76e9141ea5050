// The configuration schema: every key with its meaning, default and unit. Built twice from one
// definition: `documentSchema` keeps units as written (what check-config prints), `runtimeSchema` turns
// durations into milliseconds and sizes into bytes (what the daemon uses).
import { hostname } from 'node:os';
import { z } from 'zod';
import { BOUNCE_CLASSES, type BounceClass, isBounceClass } from '../bounce/classes.js';
import { parseCidr } from '../core/cidr.js';
import { redisSchema } from './redis-schema.js';
import { badRegexKeys } from './regex-keys.js';
import { scopedOptions } from './scoped-schema.js';
import { shapingRuleSchema } from './shaping-schema.js';
import { webhookSchema } from './webhooks-schema.js';
import { parseDuration, parseRate, parseSize } from './units.js';

const DEFAULT_PROHIBITED_HOSTS = [
  '0.0.0.0/8', '127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10',
  '169.254.0.0/16', '224.0.0.0/4', '240.0.0.0/4', '255.255.255.255/32',
  '::/128', '::1/128', 'fc00::/7', 'fe80::/10', 'ff00::/8',
];

const cidr = z.string().refine((v) => parseCidr(v) !== undefined, { message: 'expected an IP address or CIDR such as 192.0.2.0/24' });

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/, {
  message: 'expected host or host:port, such as mx.example.net:25 or [2001:db8::1]:25',
});

function unitText(parse: (v: string | number) => unknown, what: string, example: string) {
  return z.union([z.string(), z.number()]).refine((v) => parse(v) !== undefined, {
    message: `expected a ${what} such as ${example}`,
  });
}

function unitValue<T>(parse: (v: string | number) => T | undefined, what: string, example: string) {
  return unitText(parse, what, example).transform((v) => parse(v)!);
}

function isLoopbackHostPort(v: string): boolean {
  const host = v.startsWith('[') ? v.slice(1, v.indexOf(']')) : v.split(':')[0]!;
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A scoped option at the global scope, where it has a default; its meaning travels with it. */
function globally<T extends z.ZodType>(option: z.ZodOptional<T>, value: z.util.NoUndefined<z.output<T>>) {
  return option.unwrap().default(value).describe(option.description!);
}

const NAME = /^[A-Za-z0-9_.-]+$/;
const name = (what: string) => z.string().regex(NAME, { message: `${what} names use letters, digits, '.', '_' and '-' only` });

const bindingRule = z.strictObject({
  sender_domain: z.string().toLowerCase().optional().describe('match the envelope sender domain'),
  recipient_domain: z.string().toLowerCase().optional().describe('match the recipient domain'),
  binding: z.string().optional().describe('assign this binding'),
  binding_group: z.string().optional().describe('assign this binding group'),
}).refine((r) => (r.binding === undefined) !== (r.binding_group === undefined), { message: 'set exactly one of binding or binding_group' })
  .refine((r) => r.sender_domain !== undefined || r.recipient_domain !== undefined, { message: 'set sender_domain or recipient_domain' });

const BOUNCE_CLASS_LIST = Object.entries(BOUNCE_CLASSES).map(([n, name]) => `${n} (${name})`).join(', ');

const bounceClassRule = z.strictObject({
  match: z.string().min(1).superRefine((v, ctx) => {
    try {
      new RegExp(v, 'i');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `invalid regular expression /${v}/: ${(err as Error).message.replace(/^.*: /, '')}` });
    }
  }).describe('regular expression over the whole reply, "code enhanced text", matched case-insensitively anywhere in it'),
  // A transform rather than z.custom, whose failure would keep the cross-key checks below from reporting theirs.
  class: z.number().transform((n, ctx): BounceClass => {
    if (isBounceClass(n)) return n;
    ctx.addIssue({ code: 'custom', message: `expected a bounce class: ${BOUNCE_CLASS_LIST}` });
    return z.NEVER;
  }).describe('the bounce class of a reply it matches'),
});

const hostOptions = z.strictObject({
  max_outbound_connections: z.number().int().min(1).optional()
    .describe('connections to this MX host across all bindings and domains; default: unlimited'),
  cluster_max_outbound_connections: z.number().int().min(1).optional()
    .describe('connections to this MX host across all bindings, domains and nodes of the cluster (leases in Redis); default: unlimited'),
});

/** RFC 6376 §5.4.1's list, narrowed to what identifies and frames a message and its unsubscribe headers (RFC 8058). */
export const DKIM_DEFAULT_HEADERS = [
  'From', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'Reply-To', 'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding',
  'List-Unsubscribe', 'List-Unsubscribe-Post', 'List-Id', 'Feedback-ID',
];

const headerName = z.string().regex(/^[\x21-\x39\x3b-\x7e]+$/, { message: 'expected a header field name such as Subject' });
const dnsName = z.string().regex(/^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/, {
  message: 'expected a domain name in its ASCII form, such as example.com',
});

const plugin = z.strictObject({
  path: z.string().describe('ES module exporting register(api) (relative to the config file)'),
  options: z.unknown().optional().describe('passed to the plugin as api.options'),
});

function makeSchema<D extends z.ZodType, DO extends z.ZodType, S extends z.ZodType, R extends z.ZodType>(
  duration: (byDefault: string) => D, durationOpt: () => DO, size: (byDefault: string) => S, rateOpt: () => R,
) {
  const scoped = scopedOptions(durationOpt, rateOpt);
  const dkimKey = z.strictObject({
    domain: dnsName.transform((d) => d.toLowerCase())
      .describe('signing domain (d=): signs mail whose From: domain is this domain or a subdomain of it; the most specific domain wins'),
    selector: dnsName.describe('selector (s=): the public key is published at <selector>._domainkey.<domain>'),
    key_file: z.string().describe('PEM private key, RSA (2048 bits or more) or Ed25519 (RFC 8463), its type read from the file (relative to the config file)'),
    headers: z.array(headerName).min(1).default(DKIM_DEFAULT_HEADERS)
      .describe('header fields signed when present'),
    oversign_headers: z.array(headerName).default(['From'])
      .describe('header fields signed once more than they occur, so one added in transit breaks the signature'),
    expire: durationOpt().describe('signature lifetime, the x= tag; default: none'),
  });
  const shapingRule = shapingRuleSchema(scoped, durationOpt);
  const domainScopes = z.record(z.string(), z.strictObject(scoped)).optional()
    .describe('delivery options per destination domain; a key written /regex/ matches by pattern (literal keys win)');

  const binding = z.strictObject({
    name: name('binding').describe('binding name; "default" configures the implicit default binding'),
    bind_address: z.string().refine((v) => parseCidr(v)?.prefix === (v.includes(':') ? 128 : 32), { message: 'expected an IP address' })
      .optional().describe('source IP address of connections from this binding; default: chosen by the kernel'),
    ehlo_hostname: z.string().optional().describe('EHLO name of this binding; default: the global ehlo_hostname'),
    ...scoped,
    domains: domainScopes,
  });
  
  const bindingGroup = z.strictObject({
    name: name('binding group').describe('binding group name'),
    bindings: z.array(z.string()).min(1).describe('member bindings; a message picks one by a hash of its id'),
    ...scoped,
    domains: domainScopes,
  });


  const tlsFiles = z.strictObject({
    cert: z.string().describe('PEM certificate chain file offered on STARTTLS'),
    key: z.string().describe('PEM private key file for cert'),
  });

  const listenerAuth = z.strictObject({
    users_file: z.string()
      .describe('file of user:hash lines, hashes from `impulse hash-password` (relative to the config file); read at start and again on reload'),
    max_failures: z.number().int().min(1).default(3)
      .describe('failed AUTH attempts in one session after which it gets 421 4.7.0 and is closed'),
  });

  const listener = z.strictObject({
    address: z.string().default('127.0.0.1').describe('IP address to listen on'),
    port: z.number().int().min(1).max(65535).default(2525).describe('TCP port to listen on'),
    relay_from: z.array(cidr).default(['127.0.0.1/32', '::1/128'])
      .describe('client networks allowed to inject mail without AUTH; others get 554 5.7.1 at connect, or must AUTH when the listener has auth'),
    max_message_size: size('25MB').describe('largest message accepted (bytes; units allowed); larger get 552 5.3.4'),
    max_recipients: z.number().int().min(1).default(1000).describe('recipients per transaction; more get 452 4.5.3'),
    tls: tlsFiles.optional().describe('certificate for STARTTLS on this listener; without it STARTTLS is not offered'),
    auth: listenerAuth.optional()
      .describe('SMTP AUTH (PLAIN, LOGIN) after STARTTLS for clients outside relay_from; needs tls; without it those clients are refused'),
    max_unauthenticated_commands: z.number().int().min(1).default(10)
      .describe('commands (AUTH itself excepted) a client that must authenticate may send before AUTH; the next gets 421 and the session is closed'),
    reuse_port: z.boolean().default(false)
      .describe('listen with SO_REUSEPORT, so several daemons on one host (impulse@.service, one per core) share this address and port and the kernel spreads connections over them; needs Node.js 22.12 or later'),
    max_clients: z.number().int().min(1).default(10000)
      .describe('intake sessions open at once on this listener; further connections get 421 4.7.0 and are closed'),
    max_command_length: z.number().int().min(512).default(4096)
      .describe('longest command line in bytes, without its CRLF (RFC 5321 asks for at least 512); a longer one gets 421 and the session is closed'),
    idle_timeout: duration('5m')
      .describe('inbound: how long an intake session may wait for the client before 421 and close (RFC 5321 4.5.3.2.7); unrelated to the outbound idle_timeout'),
  }).refine((l) => l.auth === undefined || l.tls !== undefined, {
    message: 'auth needs tls: AUTH is accepted only after STARTTLS, so set tls: { cert, key } on this listener', path: ['auth'],
  });

  const redis = redisSchema(durationOpt, size);

  const admin = z.strictObject({
    socket: z.string().default('var/impulse.sock')
      .describe('Unix socket of the admin API, mode 0600 (relative to the config file); used unless listen is set'),
    listen: hostPort.refine((v) => /:\d+$/.test(v), { message: 'expected host:port, such as 127.0.0.1:8025' })
      .refine((v) => isLoopbackHostPort(v), { message: 'the admin API listens on loopback only, such as 127.0.0.1:8025' })
      .optional().describe('loopback host:port for the admin API over HTTP instead of the socket; needs token_file'),
    token_file: z.string().optional()
      .describe('file holding the bearer token that admin requests over listen must carry (relative to the config file)'),
  }).refine((a) => a.listen === undefined || a.token_file !== undefined, { message: 'admin.listen needs admin.token_file' });

  const metrics = z.strictObject({
    listen: z.union([hostPort.refine((v) => /:\d+$/.test(v), { message: 'expected host:port, such as 127.0.0.1:9725' }), z.literal(false)]).default('127.0.0.1:9725')
      .describe('host:port serving /metrics (Prometheus), /healthz and /readyz; false turns it off'),
  });

  const dns = z.strictObject({
    servers: z.array(hostPort).optional().describe('resolvers as ip or ip:port; default: the system resolvers'),
    timeout: duration('5s').describe('time to wait for one DNS answer'),
    tries: z.number().int().min(1).default(3).describe('attempts per DNS query before a lookup fails temporarily'),
  });

  return z.strictObject({
    hostname: z.string().default(hostname()).describe('name of this MTA in Received headers and DSNs'),
    node_name: name('node').default(hostname().replace(/[^A-Za-z0-9_.-]/g, '-'))
      .describe('this daemon\'s name among the nodes sharing its Redis (heartbeats, impulse summary, leases); unique per running daemon; default: the host name'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info').describe('least severe log level written'),
    redis: redis.prefault({ embedded: true } as z.input<typeof redis>).describe('where the queue lives'),
    listen: z.array(listener).min(1).prefault([{}] as z.input<typeof listener>[]).describe('SMTP intake listeners'),
    dns: dns.prefault({} as z.input<typeof dns>).describe('resolvers for MX, address and MTA-STS TXT lookups, and for DANE\'s DNSSEC questions (TLSA records, the AD bit): with dane on, they must validate DNSSEC'),
    admin: admin.prefault({} as z.input<typeof admin>).describe('the admin API the impulse CLI talks to'),
    metrics: metrics.prefault({} as z.input<typeof metrics>).describe('Prometheus metrics and health checks over HTTP'),
    dsn_max_return_size: size('50000')
      .describe('largest message a DSN returns whole when its sender asked for RET=FULL; a larger one returns its headers only (Postfix\'s bounce_size_limit)'),
    delay_dsn_after: duration('0')
      .describe('how long mail may wait before its sender gets one delay DSN per recipient (Action: delayed), for recipients whose NOTIFY asks for DELAY or who gave no NOTIFY; 0 sends none (Postfix\'s delay_warning_time)'),
    message_history_retention: duration('24h')
      .describe('how long the attempt history of a finished message is kept for `impulse message show`; 0 keeps none'),
    bounce_class_rules: z.array(bounceClassRule).default([])
      .describe('Momentum bounce classes of deferrals and failures by their reply, first match wins, tried before the shipped rules'),
    ehlo_hostname: z.string().default(hostname()).describe('name sent in EHLO to remote servers'),
    remote_smtp_port: globally(scoped.remote_smtp_port, 25),
    connect_timeout: duration('300s').describe('time allowed to establish an outbound TCP connection'),
    greeting_timeout: duration('300s').describe('time allowed for the remote greeting after connecting'),
    data_timeout: duration('600s').describe('inactivity allowed on an outbound session after the greeting; also each stage\'s share of a transaction\'s total deadline (MAIL, each RCPT, DATA, content, final reply), so a server trickling bytes cannot hold a session for ever'),
    retry_interval: duration('20m').describe('wait after the first transient failure; doubles after each further one'),
    max_retry_interval: duration('12h').describe('ceiling of the doubling retry interval'),
    message_expiration: duration('24h')
      .describe('age after which undelivered mail fails with 554 5.4.7'),
    tls: globally(scoped.tls, 'ifavailable'),
    tls_verify: globally(scoped.tls_verify, 'no'),
    tls_ifavailable_fallback: globally(scoped.tls_ifavailable_fallback, true),
    tls_ca_file: z.string().optional()
      .describe('PEM CA certificates trusted by tls_verify and MTA-STS policy fetches besides the bundled public roots and NODE_EXTRA_CA_CERTS (relative to the config file); read at start, a change needs a restart'),
    max_outbound_connections: globally(scoped.max_outbound_connections, 32),
    scope_max_outbound_connections: scoped.scope_max_outbound_connections,
    connection_allocation_aggressiveness: globally(scoped.connection_allocation_aggressiveness, 'high'),
    outbound_throttle_messages: scoped.outbound_throttle_messages,
    outbound_throttle_connections: scoped.outbound_throttle_connections,
    max_deliveries_per_connection: globally(scoped.max_deliveries_per_connection, 0),
    max_recipients_per_batch: globally(scoped.max_recipients_per_batch, 100),
    idle_timeout: duration('5s').describe('how long a connection with nothing to send is held open for more mail'),
    mx_failures_to_delay: globally(scoped.mx_failures_to_delay, 50),
    max_ready: globally(scoped.max_ready, 1000),
    mta_sts: globally(scoped.mta_sts, true),
    dane: globally(scoped.dane, false),
    adaptive: scoped.adaptive,
    cluster_max_outbound_connections: scoped.cluster_max_outbound_connections,
    cluster_outbound_throttle_messages: scoped.cluster_outbound_throttle_messages,
    cluster_outbound_throttle_connections: scoped.cluster_outbound_throttle_connections,
    cluster_lease_ttl: duration('30s')
      .describe('how long a cluster connection lease lasts unless renewed (every third of it while its connection is open): the longest a dead node\'s connections still count against cluster_max_outbound_connections'),
    server_max_outbound_connections: z.number().int().min(1).default(20000).describe('outbound connections open at once, all bindings and domains'),
    migrate_connections_between_sibling_domains: z.boolean().default(true)
      .describe('a connection with nothing left for its domain moves on to another domain sharing that MX host'),
    domains: globally(domainScopes, {}),
    prohibited_hosts: z.array(cidr).default(DEFAULT_PROHIBITED_HOSTS)
      .describe('destination addresses never connected to; a domain whose MXs are all here fails with 551 5.4.6'),
    routes: z.record(z.string(), hostPort).default({})
      .describe('per-domain static next hop host:port; skips the MX lookup'),
    bind_address: z.string().optional().describe('source address of the default binding; default: chosen by the kernel'),
    bindings: z.array(binding).default([]).describe('bindings: source address and EHLO name per virtual MTA'),
    binding_groups: z.array(bindingGroup).default([]).describe('named sets of bindings'),
    binding_rules: z.array(bindingRule).default([])
      .describe('binding assignment by sender or recipient domain, first match wins; headers X-Impulse-Binding(-Group) take precedence'),
    default_binding: z.enum(['normal', 'none']).default('normal')
      .describe('mail with no (or an unknown) binding: normal sends it from the default binding, none refuses it at intake with 451'),
    host_failure_retry: duration('120s').describe('how long an address that refused or timed out is skipped, per binding'),
    skip_hosts: z.array(z.string()).default([]).describe('MX host names or addresses never connected to; other MXs of the domain are still used'),
    hosts: z.record(z.string(), hostOptions).default({})
      .describe('options per MX host name; a key written /regex/ matches by pattern (literal keys win)'),
    dkim: z.array(dkimKey).default([])
      .describe('DKIM keys (RFC 6376, relaxed/relaxed); a domain may carry two, such as RSA and Ed25519; mail is signed once, at intake'),
    shaping_rules: z.array(shapingRule).default([])
      .describe('rules on receivers\' replies: when one matches (trigger times), its action holds the scope for the duration; every matching rule counts and acts'),
    shaping_rules_files: z.array(z.string()).default([])
      .describe('YAML files, each a list of rules in the shaping_rules format, loaded after shaping_rules in this order (relative to the config file)'),
    plugins: z.array(plugin).default([]).describe('plugins loaded at start, in order'),
    webhooks: z.array(webhookSchema(duration)).default([])
      .describe('outcome records POSTed in JSON batches to the sender\'s systems, queued in Redis as they are logged and retried while an endpoint is down (docs/webhooks.md)'),
    webhook_retention: duration('3d')
      .describe('how long a record waits for its webhook\'s endpoint before it is dropped, logged as webhook_records_dropped and counted'),
    hook_timeout: duration('5s').describe('time a hook handler may take before it is abandoned and logged'),
    max_active_messages: z.number().int().min(1).default(10000)
      .describe('messages held in memory ready for delivery, all domains together; the rest wait in Redis'),
    job_lock_timeout: duration('60s')
      .describe('longest a job held by a daemon that died stays claimed before any daemon of the cluster (or the next start) can take it up; the embedded Redis frees them at the next start at once. The claim lasts three quarters of it, renewed every three eighths, and every daemon looks for lapsed claims every quarter'),
    suspended_recheck_interval: duration('1h').describe('how long mail parked by a suspended domain or binding waits before it is looked at again, if no resume (or daemon start) promotes it first'),
    shutdown_timeout: duration('30s').describe('time sessions in flight get to finish on SIGTERM'),
  }).superRefine((cfg, ctx) => {
    // Runs even when other keys are invalid (see `when`), so every error shows in one pass;
    // hence the guards against fields that failed their own checks.
    const list = <T>(v: unknown): T[] => (Array.isArray(v) ? v as T[] : []);
    const bindingNames = new Set(['default']);
    list<{ name?: unknown }>(cfg.bindings).forEach((b, i) => {
      if (typeof b?.name !== 'string') return;
      if (b.name !== 'default' && bindingNames.has(b.name)) ctx.addIssue({ code: 'custom', path: ['bindings', i, 'name'], message: `duplicate binding "${b.name}"` });
      bindingNames.add(b.name);
    });
    const groupNames = new Set(['default']);
    list<{ name?: unknown; bindings?: unknown }>(cfg.binding_groups).forEach((g, i) => {
      if (typeof g?.name === 'string') groupNames.add(g.name);
      list<unknown>(g?.bindings).forEach((m, j) => {
        if (typeof m === 'string' && !bindingNames.has(m)) ctx.addIssue({ code: 'custom', path: ['binding_groups', i, 'bindings', j], message: `unknown binding "${m}"` });
      });
    });
    const regexCheck = (table: unknown, path: Array<string | number>) => {
      if (typeof table !== 'object' || table === null) return;
      for (const key of badRegexKeys(table as Record<string, Record<string, unknown>>)) {
        ctx.addIssue({ code: 'custom', path: [...path, key], message: `invalid regular expression ${key}` });
      }
    };
    const webhookNames = new Set<string>();
    list<{ name?: unknown }>(cfg.webhooks).forEach((w, i) => {
      if (typeof w?.name !== 'string') return;
      if (webhookNames.has(w.name)) ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'name'], message: `webhook "${w.name}" is configured twice` });
      webhookNames.add(w.name);
    });
    const signers = new Set<string>();
    list<{ domain?: unknown; selector?: unknown }>(cfg.dkim).forEach((k, i) => {
      if (typeof k?.domain !== 'string' || typeof k.selector !== 'string') return;
      const id = `${k.domain.toLowerCase()}:${k.selector}`;
      if (signers.has(id)) ctx.addIssue({ code: 'custom', path: ['dkim', i, 'selector'], message: `selector ${k.selector} of ${k.domain} is configured twice` });
      signers.add(id);
    });
    regexCheck(cfg.domains, ['domains']);
    regexCheck(cfg.hosts, ['hosts']);
    list<{ domains?: unknown }>(cfg.bindings).forEach((b, i) => regexCheck(b?.domains, ['bindings', i, 'domains']));
    list<{ domains?: unknown }>(cfg.binding_groups).forEach((g, i) => regexCheck(g?.domains, ['binding_groups', i, 'domains']));
    list<{ binding?: unknown; binding_group?: unknown }>(cfg.binding_rules).forEach((r, i) => {
      if (typeof r?.binding === 'string' && !bindingNames.has(r.binding)) ctx.addIssue({ code: 'custom', path: ['binding_rules', i, 'binding'], message: `unknown binding "${r.binding}"` });
      if (typeof r?.binding_group === 'string' && !groupNames.has(r.binding_group)) ctx.addIssue({ code: 'custom', path: ['binding_rules', i, 'binding_group'], message: `unknown binding group "${r.binding_group}"` });
    });
  }, { when: (payload) => typeof payload.value === 'object' && payload.value !== null });
}

const DURATION_EXAMPLE = '30s, 20m, 12h or 7d';
const RATE_EXAMPLE = '"10" (per second) or "100/60" (per 60 seconds)';
export const documentSchema = makeSchema(
  (d) => unitText(parseDuration, 'duration', DURATION_EXAMPLE).prefault(d),
  () => unitText(parseDuration, 'duration', DURATION_EXAMPLE).optional(),
  (d) => unitText(parseSize, 'size', '25MB').prefault(d),
  () => unitText(parseRate, 'throttle', RATE_EXAMPLE).optional());
export const runtimeSchema = makeSchema(
  (d) => unitValue(parseDuration, 'duration', DURATION_EXAMPLE).prefault(d),
  () => unitValue(parseDuration, 'duration', DURATION_EXAMPLE).optional(),
  (d) => unitValue(parseSize, 'size', '25MB').prefault(d),
  () => unitValue(parseRate, 'throttle', RATE_EXAMPLE).optional());
export type ConfigDocument = z.output<typeof documentSchema>;
export type Config = z.output<typeof runtimeSchema>;
export type ListenerConfig = Config['listen'][number];
