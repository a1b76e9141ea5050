// Recipients per second by binding × domain over the last minute, for `impulse top`: this
// minute's count plus the last minute's weighted by the part of it the sliding minute still
// covers, two counts per outcome instead of a ring of sixty.
type PairOutcome = 'delivered' | 'deferred' | 'failed';

const WINDOW_MS = 60_000;
const OUTCOMES: readonly PairOutcome[] = ['delivered', 'deferred', 'failed'];

interface Pair {
  binding: string;
  domain: string;
  /** Start of the current window. */
  start: number;
  current: Record<PairOutcome, number>;
  previous: Record<PairOutcome, number>;
}

type PairRate = { binding: string; domain: string } & Record<PairOutcome, number>;

const zero = (): Record<PairOutcome, number> => ({ delivered: 0, deferred: 0, failed: 0 });

export class PairRates {
  private readonly pairs = new Map<string, Pair>();

  constructor(private readonly now: () => number) {}

  add(binding: string, domain: string, outcome: PairOutcome, recipients: number): void {
    const key = `${binding}\u0000${domain}`;
    const now = this.now();
    let p = this.pairs.get(key);
    if (!p) {
      p = { binding, domain, start: now, current: zero(), previous: zero() };
      this.pairs.set(key, p);
    }
    this.roll(p, now);
    p.current[outcome] += recipients;
  }

  /** Every pair with an outcome in the last two minutes, per second; pairs quiet longer are forgotten. */
  rates(): PairRate[] {
    const now = this.now();
    const out: PairRate[] = [];
    for (const [key, p] of this.pairs) {
      this.roll(p, now);
      const weight = 1 - (now - p.start) / WINDOW_MS;
      const rate = (o: PairOutcome) => (p.previous[o] * weight + p.current[o]) / (WINDOW_MS / 1000);
      if (OUTCOMES.every((o) => p.previous[o] === 0 && p.current[o] === 0)) {
        this.pairs.delete(key);
        continue;
      }
      out.push({ binding: p.binding, domain: p.domain, delivered: rate('delivered'), deferred: rate('deferred'), failed: rate('failed') });
    }
    return out;
  }

  private roll(p: Pair, now: number): void {
    const windows = Math.floor((now - p.start) / WINDOW_MS);
    if (windows <= 0) return;
    p.previous = windows === 1 ? p.current : zero();
    p.current = zero();
    p.start += windows * WINDOW_MS;
  }
}
