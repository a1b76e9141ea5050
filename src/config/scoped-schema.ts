// The delivery options that may be set per scope (global, domain, binding, group, and their
// domain tables), with their meanings; src/config/scopes.ts walks their fallback.
import { z } from 'zod';

/** Delivery options that may be set per scope, in the order check-config lists them. */
export const SCOPED_OPTIONS = [
  'remote_smtp_port', 'connect_timeout', 'greeting_timeout', 'data_timeout', 'retry_interval', 'max_retry_interval',
  'message_expiration', 'tls', 'tls_verify', 'tls_ifavailable_fallback', 'host_failure_retry', 'max_outbound_connections',
  'scope_max_outbound_connections', 'connection_allocation_aggressiveness', 'outbound_throttle_messages', 'outbound_throttle_connections',
  'max_deliveries_per_connection', 'max_recipients_per_batch', 'idle_timeout', 'mx_failures_to_delay', 'max_ready', 'mta_sts', 'dane', 'adaptive',
  'cluster_max_outbound_connections', 'cluster_outbound_throttle_messages', 'cluster_outbound_throttle_connections',
] as const;

/** The scoped options' schemas, with durations and throttles parsed as the caller's schema does. */
export function scopedOptions<DO extends z.ZodType, R extends z.ZodType>(durationOpt: () => DO, rateOpt: () => R) {
  return {
    remote_smtp_port: z.number().int().min(1).max(65535).optional().describe('TCP port of remote MX hosts'),
    connect_timeout: durationOpt().describe('time allowed to establish an outbound TCP connection'),
    greeting_timeout: durationOpt().describe('time allowed for the remote greeting after connecting'),
    data_timeout: durationOpt().describe('inactivity allowed on an outbound session after the greeting; also each stage\'s share of a transaction\'s total deadline (MAIL, each RCPT, DATA, content, final reply), so a server trickling bytes cannot hold a session for ever'),
    retry_interval: durationOpt().describe('wait after the first transient failure; doubles after each further one'),
    max_retry_interval: durationOpt().describe('ceiling of the doubling retry interval'),
    message_expiration: durationOpt().describe('age after which undelivered mail fails with 554 5.4.7'),
    tls: z.enum(['ifavailable', 'required', 'no']).optional()
      .describe('outbound STARTTLS: use when offered, insist on it (else defer), or never'),
    tls_verify: z.enum(['no', 'ca', 'host']).optional()
      .describe('what the certificate of a TLS session must prove: nothing, a chain to a trusted CA, or that and the MX host name; a failure defers the mail with 451 4.7.5, never falls back to plain text'),
    tls_ifavailable_fallback: z.boolean().optional()
      .describe('with tls: ifavailable, when STARTTLS is offered but the handshake fails: reconnect and deliver in plain text (true) or defer (false)'),
    host_failure_retry: durationOpt().describe('how long an address that refused or timed out is skipped, per binding'),
    max_outbound_connections: z.number().int().min(1).optional()
      .describe('connections per binding × domain, or per sibling pool (domains sharing a first MX host) with migration on (in a hosts entry: per MX host across bindings)'),
    scope_max_outbound_connections: z.number().int().min(1).optional()
      .describe('connections to a domain across all bindings when set globally or per domain; per binding × domain when set in a binding scope'),
    connection_allocation_aggressiveness: z.enum(['normal', 'high']).optional()
      .describe('how fast the connection goal grows with the active queue: normal (Momentum\'s default) reaches 63% of the limit at 100 messages, high (the default) at 40'),
    outbound_throttle_messages: rateOpt().describe('messages started per period, "N" (per second) or "N/S" (per S seconds); one budget shared by every pair that takes it from the same scope'),
    outbound_throttle_connections: rateOpt().describe('connections opened per period, "N" or "N/S"; shared like outbound_throttle_messages'),
    max_deliveries_per_connection: z.number().int().min(0).optional().describe('successful deliveries after which a connection is closed; 0 = unlimited'),
    max_recipients_per_batch: z.number().int().min(1).optional().describe('recipients per SMTP transaction; a message with more is sent in several'),
    idle_timeout: durationOpt().describe('how long a connection with nothing to send is held open for more mail'),
    mx_failures_to_delay: z.number().int().min(0).optional()
      .describe('consecutive connection failures across all MXs of a domain after which the whole domain is delayed; 0 = never'),
    max_ready: z.number().int().min(1).optional()
      .describe('messages held in memory ready for delivery per binding × domain; the rest wait in Redis'),
    mta_sts: z.boolean().optional()
      .describe('look up and apply the destination\'s MTA-STS policy (RFC 8461): enforce allows only its MX hosts with TLS whose certificate names them, else defers with 451 4.7.5; testing delivers as before and logs what would have failed'),
    adaptive: z.strictObject({
      max_outbound_connections: z.tuple([z.number().int().min(1), z.number().int().min(1)]).refine(([lo, hi]) => lo <= hi, { message: 'expected [lowest, highest]' }).optional()
        .describe('bounds of max_outbound_connections: [lowest, highest]'),
      max_deliveries_per_connection: z.tuple([z.number().int().min(1), z.number().int().min(1)]).refine(([lo, hi]) => lo <= hi, { message: 'expected [lowest, highest]' }).optional()
        .describe('bounds of max_deliveries_per_connection: [lowest, highest]'),
      outbound_throttle_messages: z.tuple([rateOpt(), rateOpt()]).refine(([lo, hi]) => lo !== undefined && hi !== undefined, { message: 'expected [lowest, highest] throttles, such as [\'1/1\', \'100/1\']' }).optional()
        .describe('bounds of outbound_throttle_messages: [lowest, highest]'),
      step_down_interval: durationOpt().describe('the least time between two steps down; default 1m'),
      step_up_interval: durationOpt().describe('time without a rate or reputation deferral before a step up, and between steps up; default 1h'),
    }).optional()
      .describe('adaptive limits per binding × domain (Momentum\'s Adaptive Delivery): rate and reputation deferrals step the bounded options down by a quarter, a clean step_up_interval steps them up by a twentieth (connections by one); they start at the highest bound; off when unset'),
    dane: z.boolean().optional()
      .describe('look up TLSA records (RFC 7672) of MX hosts named by DNSSEC-signed MX records and require TLS matching them, else defer with 451 4.7.5; takes precedence over MTA-STS; needs a DNSSEC-validating resolver in dns.servers'),
    cluster_max_outbound_connections: z.number().int().min(1).optional()
      .describe('connections per binding × domain counted across every node of the cluster (leases in Redis), under each node\'s own max_outbound_connections; a connection of a pair with it set never migrates to another pair; default: unlimited'),
    cluster_outbound_throttle_messages: rateOpt().describe('messages started per period across every node of the cluster, "N" or "N/S", paced one per S/N by Redis\'s clock; one budget shared by every pair that takes it from the same scope'),
    cluster_outbound_throttle_connections: rateOpt().describe('connections opened per period across every node of the cluster, "N" or "N/S"; paced and shared like cluster_outbound_throttle_messages'),
  };
}
