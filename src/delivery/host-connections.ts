// Outbound connections open (or opening) per MX host name and per address, across bindings: the
// counts behind host limits and the even spread over equal-preference MXs.
import { EventEmitter } from 'node:events';

export class HostConnections {
  private readonly byHost = new Map<string, number>();
  private readonly byAddress = new Map<string, number>();
  private readonly events = new EventEmitter();

  constructor() {
    this.events.setMaxListeners(0);
  }

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
    this.events.emit('released', host);
  }

  hostCount(host: string): number {
    return this.byHost.get(host) ?? 0;
  }

  addressCount(address: string): number {
    return this.byAddress.get(address) ?? 0;
  }

  /** Resolves at the next release of a connection to any of these hosts. */
  released(hosts: ReadonlySet<string>): Promise<void> {
    return new Promise((resolve) => {
      const onRelease = (host: string) => {
        if (!hosts.has(host)) return;
        this.events.off('released', onRelease);
        resolve();
      };
      this.events.on('released', onRelease);
    });
  }
}
