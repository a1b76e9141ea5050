// Momentum's initiate_connection: open one outbound connection for a binding × domain ready
// queue, or say at once why not, as a CONN_ERROR_* possibly ORed with CONN_ACTION_*. Checks run in
// order: MX lookup state, prohibited hosts, failed addresses and host limits, source address; then
// the attempt runs asynchronously, moving on to the next address when one refuses, times out or
// fails its greeting. A refusal that is a wait (lookup in flight, every MX at its limit) comes with
// a promise of when to ask again, so callers never reach into lookups or host counts.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Binding } from '../binding/registry.js';
import type { Clock } from '../core/clock.js';
import { type Reply, formatReply, parseReply, reply } from '../core/reply.js';
import type { DeliveryOptions } from '../config/delivery-options.js';
import type { DnsResolver } from '../dns/resolver.js';
import type { HookRegistry } from '../hooks/registry.js';
import type { HookAddress, HookConnection, HookReadyQueue } from '../hooks/signatures.js';
import type { ObservedReply, ShapingPhase } from '../shaping/rule.js';
import type { ClusterGate, ClusterPermit } from '../cluster/gate.js';
import type { AddressHealth } from './address-health.js';
import { type AttemptRequirement, type ConnectError, type Connector, type SmtpClient, classifyConnectError } from './connector.js';
import type { DestinationPolicies } from './destination-tls.js';
import type { DomainRecord } from './domain-record.js';
import {
  CONN_ACTION_PURGE_DOMAIN, CONN_ACTION_REQUEUE1, CONN_ERROR_BIND, CONN_ERROR_CONNECT, CONN_ERROR_CONNECT_NETWORK,
  CONN_ERROR_CONNECT_TIMEOUT, CONN_ERROR_HOST_MAX_REACHED, CONN_ERROR_MX_LOOKUP_FAILED, CONN_ERROR_MX_LOOKUP_PENDING,
  CONN_ERROR_NO_MXS_REACHABLE, CONN_ERROR_PROHIBITED_IP, CONN_ERROR_SMTP_NULL_MX, flagNames,
} from './flags.js';
import type { HostConnections } from './host-connections.js';
import { chooseTarget } from './mx-choice.js';
import { type Target, lookupTargets } from './route.js';
import { TlsError } from './tls-failure.js';
import type { TlsPolicy } from './tls-policy.js';
import { type PolicyCheck, type TlsRequirement, requirementFor } from './tls-requirement.js';

/** Delivery options in force for one binding × domain, as a connection attempt reads them. */
interface ConnectionPolicy extends TlsPolicy {
  port: number;
  hostFailureRetry: number;
  connectTimeout: number;
  greetingTimeout: number;
  dataTimeout: number;
}

export interface ConnectionError {
  flags: number;
  reply: Reply;
  /** Set when the refusal is a wait on a cluster limit: settles when asking again is worth it. */
  retry?: Promise<void>;
}

/** A handle, or the refusal; `retry` is set when the refusal is a wait, resolving when it is worth asking again. */
type InitiateResult = { handle: ConnectionHandle } | { error: number; reply: Reply; retry?: Promise<void> };

interface InitiatorDeps {
  resolver: DnsResolver;
  connector: Connector;
  health: AddressHealth;
  hosts: HostConnections;
  hooks: HookRegistry;
  clock: Pick<Clock, 'now'>;
  log: Logger;
  options: DeliveryOptions;
  isLocalAddress(address: string): boolean;
  policies: DestinationPolicies;
  /** Told every verdict under a published TLS policy (the counts an RFC 8460 report is made of). */
  observer: { tlsPolicy(check: PolicyCheck): void };
  /** Hears every reply a server gave while a connection was being set up (shaping rules). */
  replies: { observe(o: ObservedReply): void };
  /** The cluster's shared limits, asked before each connection; absent on a node alone. */
  gate?: Pick<ClusterGate, 'enter'> | undefined;
}

export class ConnectionHandle implements HookConnection {
  readonly id = randomUUID();
  phase: 'connecting' | 'ready' | 'closed' = 'connecting';
  client: SmtpClient | undefined;
  /** The cluster leases the connection holds until it closes. */
  permit: ClusterPermit | undefined;
  private counted = false;

  constructor(
    /** The domain the connection serves now; changes when it migrates to a sibling domain. */
    public domain: DomainRecord,
    readonly bindingInfo: Binding,
    public target: Target,
    private readonly hosts: HostConnections,
    /** data_timeout of the ready queue that opened the session: it stays the session's after a migration. */
    readonly dataTimeout: number,
  ) {}

  get binding(): string {
    return this.bindingInfo.name;
  }

  get remote(): HookAddress {
    return { address: this.target.address, port: this.target.port, host: this.target.host };
  }

  /** Counts the connection against its MX host until close(); already counted there (while the cluster was asked), nothing changes. */
  occupy(target: Target): void {
    if (this.counted && this.target === target) return;
    this.release();
    this.target = target;
    this.hosts.acquire(target.host, target.address);
    this.counted = true;
  }

  release(): void {
    if (this.counted) this.hosts.release(this.target.host, this.target.address);
    this.counted = false;
  }

  /** Gives back the connection's cluster leases. */
  dropPermit(): void {
    this.permit?.release();
    this.permit = undefined;
  }

  /**
   * Ends the session politely and frees its place under the host limits; its cluster leases once
   * the socket has closed, so the receiver never sees more than the cluster's limit.
   */
  close(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.release();
    if (!this.client || this.client.closed) this.dropPermit();
    if (this.client) {
      const client = this.client;
      client.onClose(() => this.dropPermit());
      client.quit();
      // QUIT is a courtesy: a peer that never answers it must not hold the socket open.
      setTimeout(() => client.close(), 5000).unref();
    }
  }
}

const pending = (): ConnectionError => ({ flags: CONN_ERROR_MX_LOOKUP_PENDING, reply: reply(451, '4.4.3', '[internal] MX lookup in progress') });

function connectReply(flags: number, target: Target, err: ConnectError): Reply {
  if (err.reply) return err.reply;
  const where = `${target.host} [${target.address}]:${target.port}`;
  if (err.response) {
    // A refusal at the greeting, 5xx included, is "no service here" (RFC 5321 §3.1): never a
    // verdict on the message, so it defers, and the next MX is tried first.
    const r = parseReply(err.response);
    const said = err.response.replace(/\r?\n/g, ' ').trim();
    if (r) return reply(r.code >= 500 ? 421 : r.code, r.code >= 500 ? '4.4.0' : r.enhanced, `${where} said: ${said}`);
  }
  if (flags & CONN_ERROR_CONNECT_TIMEOUT) return reply(450, '4.4.1', `[internal] Connection Timed Out to ${where}`);
  if (flags & CONN_ERROR_BIND) return reply(451, '4.4.0', `[internal] cannot bind the source address (${err.originalCode ?? err.code}): ${err.message}`);
  return reply(421, '4.4.0', `[internal] ${where}: ${err.originalCode ?? err.code ?? 'error'}: ${err.message}`);
}

/** Where set-up failed, as shaping rules name it: at EHLO (or STARTTLS after it), else at the connection or its greeting. */
function setupPhase(err: ConnectError): ShapingPhase {
  return err.command === 'EHLO' || err.command === 'HELO' || err.command === 'STARTTLS' ? 'ehlo' : 'connect';
}

/** The targets a connection may go to: not prohibited, not skipped. */
function eligibleTargets(targets: readonly Target[], options: DeliveryOptions): Target[] {
  return targets.filter((t) => !options.prohibited.has(t.address) && !options.skipHosts.has(t.host) && !options.skipHosts.has(t.address));
}

export class Initiator {
  constructor(private readonly deps: InitiatorDeps) {}

  initiateConnection(
    dr: DomainRecord,
    binding: Binding,
    now: number,
    onConnected: (handle: ConnectionHandle, error?: ConnectionError) => void,
    onTimeout: (handle: ConnectionHandle, error: ConnectionError) => void,
  ): InitiateResult {
    const { options } = this.deps;
    const policy = this.policy(binding.name, dr.domain);
    const fail = (e: ConnectionError, target?: Target, retry?: Promise<void>): InitiateResult => {
      this.reportFailure(dr, binding, target, e, now);
      return { error: e.flags, reply: e.reply, ...(retry ? { retry } : {}) };
    };

    if (dr.needsLookup(now)) this.startLookup(dr, policy.port);
    const mx = dr.mx;
    switch (mx.phase) {
      case 'unresolved':
      case 'resolving':
        return fail(pending(), undefined, mx.phase === 'resolving' ? mx.settled : undefined);
      case 'failed':
        return fail({ flags: CONN_ERROR_MX_LOOKUP_FAILED | CONN_ACTION_PURGE_DOMAIN, reply: mx.reply });
      case 'null_mx':
        return fail({ flags: CONN_ERROR_SMTP_NULL_MX | CONN_ACTION_PURGE_DOMAIN, reply: mx.reply });
      case 'resolved':
        break;
    }

    if (mx.targets.every((t) => options.prohibited.has(t.address))) {
      return fail({
        flags: CONN_ERROR_PROHIBITED_IP | CONN_ACTION_PURGE_DOMAIN,
        reply: reply(551, '5.4.6', `[internal] every MX address of ${dr.domain} is a prohibited (private/loopback) address`),
      });
    }
    const eligible = eligibleTargets(mx.targets, options);
    const usable = eligible.filter((t) => this.requirementOf(dr, binding, t).kind !== 'refused');
    if (eligible.length > 0 && usable.length === 0) {
      // Every MX this binding may use is ruled out by the destination's published policy: the
      // domain's mail waits for the policy or its MXs to change.
      const refused = this.requirementOf(dr, binding, eligible[0]!) as Extract<TlsRequirement, { kind: 'refused' }>;
      this.deps.observer.tlsPolicy({ policy: refused.policy, mode: 'enforce', result: refused.resultType, reason: refused.reply.text });
      return fail({ flags: CONN_ERROR_NO_MXS_REACHABLE | CONN_ACTION_PURGE_DOMAIN, reply: refused.reply });
    }
    const choice = chooseTarget(usable, this.choiceState(binding, now));
    if (choice.kind === 'all_failed') {
      return fail({
        flags: CONN_ERROR_NO_MXS_REACHABLE | CONN_ACTION_REQUEUE1,
        reply: reply(421, '4.4.0', `[internal] no MXs for ${dr.domain} could be reached at this time`),
      });
    }
    if (choice.kind === 'all_at_limit') {
      return fail({
        flags: CONN_ERROR_HOST_MAX_REACHED,
        reply: reply(451, '4.4.5', `[internal] every eligible MX of ${dr.domain} is at its connection limit (${[...choice.hosts].join(', ')})`),
      }, undefined, this.deps.hosts.released(mx.targets.map((t) => t.host)));
    }
    if (binding.bindAddress && !this.deps.isLocalAddress(binding.bindAddress)) {
      return fail({
        flags: CONN_ERROR_BIND | CONN_ACTION_REQUEUE1,
        reply: reply(451, '4.4.0', `[internal] source address ${binding.bindAddress} of binding ${binding.name} is not on this host`),
      }, choice.target);
    }

    const handle = new ConnectionHandle(dr, binding, choice.target, this.deps.hosts, policy.dataTimeout);
    this.attempt(handle, policy, onConnected, onTimeout);
    return { handle };
  }

  private policy(binding: string, domain: string): ConnectionPolicy {
    const o = this.deps.options.of(binding, domain);
    return {
      port: o.remote_smtp_port, hostFailureRetry: o.host_failure_retry, connectTimeout: o.connect_timeout, greetingTimeout: o.greeting_timeout,
      dataTimeout: o.data_timeout, tls: o.tls, tlsVerify: o.tls_verify, tlsIfavailableFallback: o.tls_ifavailable_fallback,
    };
  }

  /** What the destination's published policy asks of a connection from `binding` to MX `host`. */
  private requirementOf(dr: DomainRecord, binding: Binding, target: Target): TlsRequirement {
    if (dr.mx.phase !== 'resolved') return { kind: 'options' };
    return requirementFor(dr.domain, target.host, target.port, dr.mx.tls, this.deps.options.of(binding.name, dr.domain));
  }

  private choiceState(binding: Binding, now: number) {
    const { health, hosts, options } = this.deps;
    return {
      isFailed: (address: string) => health.isFailed(binding.name, address, now),
      hostCount: (host: string) => hosts.hostCount(host),
      addressCount: (address: string) => hosts.addressCount(address),
      hostLimit: (host: string) => options.hostLimit(host),
    };
  }

  private startLookup(dr: DomainRecord, port: number): void {
    let answered!: () => void;
    const settled = new Promise<void>((resolve) => {
      answered = resolve;
    });
    dr.applyMx({ kind: 'lookup_started', settled });
    const routes = this.deps.options.routes;
    const targets = lookupTargets(dr.domain, this.deps.resolver, { routes, port })
      .catch((err: Error) => ({ kind: 'failed' as const, reply: reply(451, '4.4.3', `[internal] DNS lookup for ${dr.domain} failed: ${err.message}`) }));
    const policies = this.deps.policies.lookup(dr.domain, this.deps.options.policiesWanted(dr.domain), targets, routes[dr.domain] !== undefined);
    void Promise.all([targets, policies]).then(([result, tls]) => {
      dr.applyMx({ kind: 'lookup_finished', result, tls, now: this.deps.clock.now() });
      answered();
    });
  }

  /** Asks the cluster's limits first, if any apply; a wait ends the attempt as a refusal that says when to ask again. */
  private attempt(
    handle: ConnectionHandle,
    policy: ConnectionPolicy,
    onConnected: (handle: ConnectionHandle, error?: ConnectionError) => void,
    onTimeout: (handle: ConnectionHandle, error: ConnectionError) => void,
  ): void {
    const target = handle.target;
    const entering = this.deps.gate?.enter(handle.binding, handle.domain.domain, target.host);
    if (!entering) return this.connect(handle, policy, onConnected, onTimeout);
    // Counted under the local host limits while the cluster is asked.
    handle.occupy(target);
    void entering.then((answer) => {
      if ('permit' in answer) {
        handle.permit = answer.permit;
        return this.connect(handle, policy, onConnected, onTimeout);
      }
      handle.release();
      handle.phase = 'closed';
      const e = { flags: CONN_ERROR_HOST_MAX_REACHED, reply: answer.reply, retry: answer.retry };
      this.reportFailure(handle.domain, handle.bindingInfo, target, e, this.deps.clock.now());
      onConnected(handle, e);
    });
  }

  private connect(
    handle: ConnectionHandle,
    policy: ConnectionPolicy,
    onConnected: (handle: ConnectionHandle, error?: ConnectionError) => void,
    onTimeout: (handle: ConnectionHandle, error: ConnectionError) => void,
  ): void {
    const { health, clock, connector } = this.deps;
    const target = handle.target;
    const binding = handle.bindingInfo;
    // Refused hosts were filtered out before the choice.
    const requirement = this.requirementOf(handle.domain, binding, target) as AttemptRequirement;
    handle.occupy(target);
    connector({
      address: target.address, port: target.port, host: target.host, localAddress: binding.bindAddress,
      ehloHostname: binding.ehloHostname, connectTimeout: policy.connectTimeout, greetingTimeout: policy.greetingTimeout,
      dataTimeout: policy.dataTimeout, tls: policy.tls, tlsVerify: policy.tlsVerify, tlsIfavailableFallback: policy.tlsIfavailableFallback,
      requirement,
    }).then((client) => {
      handle.client = client;
      if (client.tls.policy) this.notePolicy(handle, client.tls.policy);
      if (client.tls.fallback !== undefined) {
        this.deps.log.warn({
          event: 'tls_fallback', domain: handle.domain.domain, binding: binding.name, mx_host: target.host, mx_ip: target.address, reason: client.tls.fallback,
        }, 'TLS handshake failed; delivering in plain text (tls_ifavailable_fallback)');
      }
      handle.phase = 'ready';
      health.clear(binding.name, target.address);
      handle.domain.recordSuccess();
      this.deps.hooks.fire('log_client_connection_success', handle.remote, handle.domain, this.queueView(handle.domain, binding), clock.now());
      onConnected(handle);
    }, (err: ConnectError) => {
      const now = clock.now();
      handle.release();
      handle.dropPermit();
      handle.domain.recordFailure();
      if (err instanceof TlsError && 'policy' in requirement) {
        this.notePolicy(handle, { policy: requirement.policy, mode: 'enforce', result: err.resultType, reason: err.reason });
      }
      const flags = classifyConnectError(err);
      if (flags & (CONN_ERROR_CONNECT | CONN_ERROR_CONNECT_NETWORK | CONN_ERROR_CONNECT_TIMEOUT)) {
        health.markFailed(binding.name, target.address, now, now + policy.hostFailureRetry, flags);
      }
      const replyOf = connectReply(flags, target, err);
      // The address is marked failed, but the pair pauses for as long as the mark lasts, so only
      // trying the next MX now keeps one dead (refusing or silent) MX from taking every attempt.
      if (flags & (CONN_ERROR_CONNECT | CONN_ERROR_CONNECT_NETWORK | CONN_ERROR_CONNECT_TIMEOUT)) {
        const next = handle.domain.mx.phase === 'resolved'
          ? chooseTarget(eligibleTargets(handle.domain.mx.targets, this.deps.options)
            .filter((t) => this.requirementOf(handle.domain, binding, t).kind !== 'refused'), this.choiceState(binding, now))
          : undefined;
        if (next?.kind === 'target') {
          this.reportFailure(handle.domain, binding, target, { flags, reply: replyOf }, now, setupPhase(err));
          handle.target = next.target;
          this.attempt(handle, policy, onConnected, onTimeout);
          return;
        }
      }
      const e = { flags: flags | CONN_ACTION_REQUEUE1, reply: replyOf };
      this.reportFailure(handle.domain, binding, target, e, now, setupPhase(err));
      handle.phase = 'closed';
      if (flags & CONN_ERROR_CONNECT_TIMEOUT) onTimeout(handle, e);
      else onConnected(handle, e);
    });
  }

  /**
   * Counts a verdict under a published policy; a failure in testing mode is logged, as it changed
   * nothing else. `mxHost`: the MX name the policy was checked for (a sibling's own, when it rides).
   */
  notePolicy(handle: ConnectionHandle, check: PolicyCheck, mxHost = handle.target.host): void {
    this.deps.observer.tlsPolicy(check);
    if (check.result === 'success' || check.mode !== 'testing') return;
    this.deps.log.warn({
      event: 'tls_policy_failure', mode: check.mode, policy_type: check.policy.type, policy_domain: check.policy.domain, policy_id: check.policy.id,
      result_type: check.result, reason: check.reason, domain: handle.domain.domain, binding: handle.binding, mx_host: mxHost, mx_ip: handle.target.address,
    }, 'session would have failed the destination\'s TLS policy (testing mode: delivered anyway)');
  }

  private queueView(dr: DomainRecord, binding: Binding): HookReadyQueue {
    return { binding: binding.name, domain: dr.domain, bindAddress: binding.bindAddress };
  }

  private reportFailure(dr: DomainRecord, binding: Binding, target: Target | undefined, e: ConnectionError, now: number | null, phase?: ShapingPhase): void {
    if (phase && target) {
      this.deps.replies.observe({ binding: binding.name, domain: dr.domain, mxHost: target.host, phase, reply: e.reply, connectionFailure: e.reply.text.startsWith('[internal]') });
    }
    const addr = target ? { address: target.address, port: target.port, host: target.host } : null;
    // A lookup in flight or a full host is a wait, not a failed attempt: hooks see it, logs at debug.
    const level = e.flags & (CONN_ERROR_MX_LOOKUP_PENDING | CONN_ERROR_HOST_MAX_REACHED) ? 'debug' : 'info';
    this.deps.log[level]({
      event: 'connection_failure', flags: flagNames(e.flags), domain: dr.domain, binding: binding.name,
      mx_host: target?.host, mx_ip: target?.address, reply: formatReply(e.reply),
    }, 'connection attempt failed');
    this.deps.hooks.fire('log_client_connection_failure', addr, e.flags, dr, this.queueView(dr, binding), now);
  }
}
