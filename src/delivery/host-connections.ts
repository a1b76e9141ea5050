// Outbound connections open (or opening) per MX host name and per address, across bindings: the
// counts behind host limits and the even spread over equal-preference MXs, and waits for a place.

interface Wait {
  hosts: ReadonlySet<string>;
  promise: Promise<void>;
  resolve(): void;
}

export class HostConnections {
  private readonly byHost = new Map<string, number>();
  private readonly byAddress = new Map<string, number>();
  /** Pending waits by their sorted host list: every queue waiting on the same hosts shares one. */
  private readonly waits = new Map<string, Wait>();

  acquire(host: string, address: string): void {
    this.byHost.set(host, (this.byHost.get(host) ?? 0) + 1);
    this.byAddress.set(address, (this.byAddress.get(address) ?? 0) + 1);
  }

  release(host: string, address: string): void {
    const h = (this.byHost.get(host) ?? 1) - 1;
    const a = (this.byAddress.get(address) ?? 1) - 1;
    if (h > 0) this.byHost.set(host, h);
    else this.byHost.delete(host);
    if (a > 0) this.byAddress.set(address, a);
    else this.byAddress.delete(address);
    for (const [key, w] of this.waits) {
      if (!w.hosts.has(host)) continue;
      this.waits.delete(key);
      w.resolve();
    }
  }

  hostCount(host: string): number {
    return this.byHost.get(host) ?? 0;
  }

  addressCount(address: string): number {
    return this.byAddress.get(address) ?? 0;
  }

  /** Resolves at the next release of a connection to any of these hosts. */
  released(hosts: Iterable<string>): Promise<void> {
    const set = new Set(hosts);
    const key = [...set].sort().join(' ');
    let w = this.waits.get(key);
    if (!w) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      w = { hosts: set, promise, resolve };
      this.waits.set(key, w);
    }
    return w.promise;
  }
}
