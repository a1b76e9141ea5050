// Bindings (Momentum's virtual MTAs: a source address and an EHLO name) and binding groups.
// A `default` binding (kernel-chosen source) and a `default` group always exist.
import { createHash } from 'node:crypto';

export const DEFAULT_BINDING = 'default';
const DEFAULT_GROUP = 'default';

export interface Binding {
  readonly name: string;
  /** Undefined: the kernel chooses the source address. */
  readonly bindAddress: string | undefined;
  readonly ehloHostname: string;
}

interface BindingsConfig {
  bind_address?: string | undefined;
  ehlo_hostname: string;
  bindings: Array<{ name: string; bind_address?: string | undefined; ehlo_hostname?: string | undefined }>;
  binding_groups: Array<{ name: string; bindings: string[] }>;
}

/** A stable hash of a message id onto [0, n): a retry leaves from the same binding. */
export function stableIndex(key: string, n: number): number {
  return createHash('sha1').update(key).digest().readUInt32BE(0) % n;
}

export class Bindings {
  private readonly bindings = new Map<string, Binding>();
  private readonly groups = new Map<string, readonly string[]>();
  private readonly suspended = new Set<string>();

  constructor(cfg: BindingsConfig) {
    this.reconfigure(cfg);
  }

  /** Takes a new config's bindings and groups (a reload); suspensions stay. */
  reconfigure(cfg: BindingsConfig): void {
    this.bindings.clear();
    this.groups.clear();
    const declaredDefault = cfg.bindings.find((b) => b.name === DEFAULT_BINDING);
    this.bindings.set(DEFAULT_BINDING, {
      name: DEFAULT_BINDING,
      bindAddress: declaredDefault?.bind_address ?? cfg.bind_address,
      ehloHostname: declaredDefault?.ehlo_hostname ?? cfg.ehlo_hostname,
    });
    for (const b of cfg.bindings) {
      if (b.name === DEFAULT_BINDING) continue;
      this.bindings.set(b.name, { name: b.name, bindAddress: b.bind_address, ehloHostname: b.ehlo_hostname ?? cfg.ehlo_hostname });
    }
    for (const g of cfg.binding_groups) this.groups.set(g.name, g.bindings);
    if (!this.groups.has(DEFAULT_GROUP)) this.groups.set(DEFAULT_GROUP, [DEFAULT_BINDING]);
  }

  get(name: string): Binding | undefined {
    return this.bindings.get(name);
  }

  names(): string[] {
    return [...this.bindings.keys()];
  }

  suspendedNames(): string[] {
    return [...this.suspended];
  }

  hasGroup(name: string): boolean {
    return this.groups.has(name);
  }

  suspend(name: string): void {
    this.suspended.add(name);
  }

  resume(name: string): void {
    this.suspended.delete(name);
  }

  isSuspended(name: string): boolean {
    return this.suspended.has(name);
  }

  /**
   * The binding a job leaves from at this attempt. A binding or group that no longer exists
   * (after a reload) falls back to the default rather than stranding the mail.
   */
  resolve(choice: { binding?: string | undefined; group?: string | undefined }, messageKey: string): Binding {
    const picked = choice.binding !== undefined ? this.get(choice.binding)
      : choice.group !== undefined ? this.pickFromGroup(choice.group, messageKey) : undefined;
    return picked ?? this.bindings.get(DEFAULT_BINDING)!;
  }

  /**
   * The binding a message of a group leaves from: a stable pick by message id among the group's
   * unsuspended bindings (all of them when every one is suspended, so the message still has one).
   */
  pickFromGroup(group: string, messageKey: string): Binding | undefined {
    const members = (this.groups.get(group) ?? []).filter((n) => this.bindings.has(n));
    if (members.length === 0) return undefined;
    const active = members.filter((n) => !this.suspended.has(n));
    const pool = active.length > 0 ? active : members;
    return this.bindings.get(pool[stableIndex(messageKey, pool.length)]!);
  }
}
