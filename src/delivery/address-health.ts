// Momentum's per-binding address failure marks: an address that refused or timed out is skipped
// by that binding until host_failure_retry has passed.

interface FailureMark {
  binding: string;
  /** When the failure happened. */
  at: number;
  until: number;
  flags: number;
}

export class AddressHealth {
  private readonly marks = new Map<string, FailureMark>();

  private key(binding: string, address: string): string {
    return `${binding}\u0000${address}`;
  }

  markFailed(binding: string, address: string, at: number, until: number, flags: number): void {
    this.marks.set(this.key(binding, address), { binding, at, until, flags });
  }

  clear(binding: string, address: string): void {
    this.marks.delete(this.key(binding, address));
  }

  isFailed(binding: string, address: string, now: number): boolean {
    const mark = this.marks.get(this.key(binding, address));
    if (mark === undefined) return false;
    if (now < mark.until) return true;
    this.marks.delete(this.key(binding, address));
    return false;
  }

  /** The marks in force on `address`, one per binding that failed to reach it. */
  marksOf(address: string, bindings: Iterable<string>, now: number): FailureMark[] {
    const out: FailureMark[] = [];
    for (const b of bindings) {
      if (this.isFailed(b, address, now)) out.push(this.marks.get(this.key(b, address))!);
    }
    return out;
  }

  /** Forgets the marks of every binding on these addresses (an operator's flush). */
  clearAddresses(addresses: Iterable<string>, bindings: Iterable<string>): void {
    const names = [...bindings];
    for (const a of addresses) for (const b of names) this.clear(b, a);
  }
}
