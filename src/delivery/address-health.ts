// Failure marks per (binding, remote address), as Momentum's address_metrics: an address that
// refused or timed out is skipped from that binding for host_failure_retry, then tried again.
export class AddressHealth {
  private readonly failedUntil = new Map<string, number>();

  private key(binding: string, address: string): string {
    return `${binding}\u0000${address}`;
  }

  markFailed(binding: string, address: string, until: number): void {
    this.failedUntil.set(this.key(binding, address), until);
  }

  clear(binding: string, address: string): void {
    this.failedUntil.delete(this.key(binding, address));
  }

  isFailed(binding: string, address: string, now: number): boolean {
    const until = this.failedUntil.get(this.key(binding, address));
    if (until === undefined) return false;
    if (now < until) return true;
    this.failedUntil.delete(this.key(binding, address));
    return false;
  }
}
