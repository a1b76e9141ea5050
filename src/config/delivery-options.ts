// The options delivery reads from the live configuration, in one place and one argument order
// (binding, domain): scoped options with the scope each comes from, per-host limits, routes and
// address lists, and the global caps. A reload swaps the configuration under every reader.
import { AddressSet } from '../core/cidr.js';
import type { Config } from './schema.js';
import { OptionScopes, type ScopedOption, type ScopedValues, hostOptions, largestScopedValue } from './scopes.js';

/** Options in force over the configured ones, and the scope each comes from (`adaptive …`, `shaping …`). */
export interface OptionsLayer {
  values: Partial<ScopedValues>;
  from: Partial<Record<ScopedOption, string>>;
}

/** The layer over a binding × domain's configured options (adaptive limits, shaping's set actions), given those options. */
type OptionsOverlay = (binding: string, domain: string, configured: ScopedValues) => OptionsLayer | undefined;

/** Several overlays as one, each later one over the ones before it. */
export function layered(...overlays: OptionsOverlay[]): OptionsOverlay {
  return (binding, domain, configured) => {
    let out: OptionsLayer | undefined;
    for (const o of overlays) {
      const next = o(binding, domain, configured);
      if (next) out = out ? { values: { ...out.values, ...next.values }, from: { ...out.from, ...next.from } } : next;
    }
    return out;
  };
}

export class DeliveryOptions {
  private readonly scopes: OptionScopes;
  private current!: Config;
  private prohibitedSet!: AddressSet;
  private skipped!: ReadonlySet<string>;

  constructor(config: Config, private readonly overlay: OptionsOverlay = () => undefined) {
    this.scopes = new OptionScopes(config);
    this.reconfigure(config);
  }

  reconfigure(config: Config): void {
    this.current = config;
    this.scopes.reconfigure(config);
    this.prohibitedSet = new AddressSet(config.prohibited_hosts);
    this.skipped = new Set(config.skip_hosts.map((h) => h.toLowerCase()));
  }

  /** The scoped options in force for a binding × domain: the configured ones under any overlay. */
  of(binding: string, domain: string): ScopedValues {
    const base = this.scopes.get(binding, domain);
    const over = this.overlay(binding, domain, base);
    return over ? { ...base, ...over.values } : base;
  }

  /** The published TLS policies some binding wants looked up for `domain` (each binding then applies its own switches). */
  policiesWanted(domain: string): { mta_sts: boolean; dane: boolean } {
    const scopes = ['default', ...this.current.bindings.map((b) => b.name)].map((b) => this.of(b, domain));
    return { mta_sts: scopes.some((o) => o.mta_sts), dane: scopes.some((o) => o.dane) };
  }

  /** The scoped options as configured, without any overlay: what adaptive limits read their bounds from. */
  configured(binding: string, domain: string): ScopedValues {
    return this.scopes.get(binding, domain);
  }

  /** The scope an option's value comes from: shared budgets (throttles, scope caps) are keyed by it. */
  scopeOf(binding: string, domain: string, key: ScopedOption): string {
    return this.overlay(binding, domain, this.scopes.get(binding, domain))?.from[key] ?? this.scopes.scopeOf(binding, domain, key);
  }

  /** max_outbound_connections of an MX host (`hosts:`), across bindings and domains; undefined: no limit. */
  hostLimit(host: string): number | undefined {
    return hostOptions(this.current, host)?.max_outbound_connections;
  }

  /** cluster_max_outbound_connections of an MX host (`hosts:`), across bindings, domains and nodes; undefined: no limit. */
  hostClusterLimit(host: string): number | undefined {
    return hostOptions(this.current, host)?.cluster_max_outbound_connections;
  }

  /** The global options: server-wide caps and switches. */
  get global(): Readonly<Config> {
    return this.current;
  }

  get routes(): Readonly<Record<string, string>> {
    return this.current.routes;
  }

  get prohibited(): AddressSet {
    return this.prohibitedSet;
  }

  get skipHosts(): ReadonlySet<string> {
    return this.skipped;
  }

  /** The longest message_expiration of any scope: how long a body may be needed. */
  longestExpiration(): number {
    return largestScopedValue(this.current, 'message_expiration');
  }
}
