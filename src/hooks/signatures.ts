// Every hook Impulse fires, declared once with its arguments. Handlers receive the closure they
// registered with first, as Momentum's do; the remaining arguments are read-only views of core
// state. Hooks depend on nothing in the pipeline: the pipeline's objects satisfy these views.
import type { BounceClass } from '../bounce/classes.js';

/** A remote address an outbound connection was (or was to be) made to. */
export interface HookAddress {
  readonly address: string;
  readonly port: number;
  /** The MX host name the address belongs to. */
  readonly host: string;
}

/** Momentum's domain_record, as hooks may see it. */
export interface HookDomain {
  readonly domain: string;
  /** Consecutive connection failures across all of the domain's MXs. */
  readonly consecutiveFailures: number;
}

/** The binding × domain ready queue a connection is made for. */
export interface HookReadyQueue {
  readonly binding: string;
  readonly domain: string;
  /** The binding's source address, undefined when the kernel chooses. */
  readonly bindAddress: string | undefined;
}

/** An outbound connection, as hooks may see it. */
export interface HookConnection {
  readonly id: string;
  readonly binding: string;
  readonly remote: HookAddress;
}

/** A message at binding assignment (intake) or at a delivery outcome. */
export interface HookMessage {
  readonly qid: string;
  readonly sender: string;
  readonly recipients: readonly string[];
  /** Lower-cased header names; values unfolded. */
  readonly headers: ReadonlyMap<string, string>;
}

/** A configured DKIM key, named as its signature names it. */
export interface HookDkimKey {
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: 'rsa-sha256' | 'ed25519-sha256';
}

/**
 * What dkim_sign may decide: undefined leaves it to later handlers or the default, false signs
 * with no key, a list signs with exactly those configured keys.
 */
type DkimChoice = ReadonlyArray<{ domain: string; selector: string }> | false | undefined;

/** What set_binding may decide; undefined leaves the decision to later handlers or the default. */
export type BindingChoice = { binding: string } | { group: string } | undefined;

export interface HookSignatures {
  /** Every failed outbound connection attempt. `err` is CONN_ERROR_* possibly ORed with CONN_ACTION_*. `now` may be null. */
  log_client_connection_failure(closure: unknown, addr: HookAddress | null, err: number, domain: HookDomain, queue: HookReadyQueue, now: number | null): void | Promise<void>;
  /** Every outbound connection attempt that reached a usable SMTP session. */
  log_client_connection_success(closure: unknown, addr: HookAddress, domain: HookDomain, queue: HookReadyQueue, now: number | null): void | Promise<void>;
  /**
   * Before a connection moves from serving `src` to serving sibling domain `dest` (same binding, an
   * MX in common): its queue ran out of mail, it is lent to a sibling that has no connection while
   * `src` may still hold mail, or an idle connection is taken over by `dest`.
   */
  premigrate_outbound_connection(closure: unknown, connh: HookConnection, src: HookDomain, dest: HookDomain): void | Promise<void>;
  /** At intake, per destination domain, when neither header nor config rule chose a binding. The last non-undefined result wins. */
  set_binding(closure: unknown, msg: HookMessage, domain: string): BindingChoice | Promise<BindingChoice>;
  /**
   * At intake, once per message, before it is stored: `keys` are those its From: domain would be
   * signed with (possibly none). The last non-undefined result wins.
   */
  dkim_sign(closure: unknown, msg: HookMessage, keys: readonly HookDkimKey[]): DkimChoice | Promise<DkimChoice>;
  /** Recipients accepted by the remote server. `note` is the SMTP reply. */
  log_delivery(closure: unknown, msg: HookMessage, domain: string, now: number, note: string): void | Promise<void>;
  /** Recipients deferred to a later attempt. `bounceClass` is Momentum's bounce class of the reply (see docs/hooks.md). */
  log_transient_failure(closure: unknown, msg: HookMessage, domain: string, now: number, note: string, bounceClass: BounceClass): void | Promise<void>;
  /** Recipients failed for good. `bounceClass` is Momentum's bounce class of the reply. */
  log_permanent_failure(closure: unknown, msg: HookMessage, domain: string, now: number, note: string, bounceClass: BounceClass): void | Promise<void>;
}

export type HookName = keyof HookSignatures;
export type HookArgs<N extends HookName> = Parameters<HookSignatures[N]> extends [unknown, ...infer Rest] ? Rest : never;
export type HookResult<N extends HookName> = Awaited<ReturnType<HookSignatures[N]>>;
