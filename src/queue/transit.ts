// Jobs in transit: taken from Redis and neither held by the scheduler nor handed back to BullMQ
// (just fetched, or a park or retry on its way back to the delayed set). Fetches wait while too
// many are. BullMQ fetches the next job as each one is put back, and the Workers' own fetches run
// beside those: when Redis slowed (its keyspace rehashing as the queue passed 2^20 keys) a
// backlog in Redis became 4,152 jobs in transit at once, and the daemon's RSS rose by 54 MB
// that Node 24's V8 did not give back. A waiting fetch leaves the backlog in Redis, where it is
// stored anyway.

export class Transit {
  private readonly jobs = new WeakSet<object>();
  private count = 0;
  /** Fetches let go and not back yet: each may bring a job, so each takes a place. */
  private fetching = 0;
  private readonly waiting: Array<() => void> = [];

  /** @param max jobs in transit, fetches under way included, beyond which fetches wait */
  constructor(private max: number) {}

  get size(): number {
    return this.count;
  }

  /**
   * Undefined when a fetch may go now, or a promise of when it may. Either way the fetch takes a
   * place until `fetched()`, which must follow it.
   */
  room(): Promise<void> | undefined {
    if (this.count + this.fetching < this.max) {
      this.fetching++;
      return undefined;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** A fetch is back, its job (if any) entered. */
  fetched(): void {
    this.fetching--;
    this.release();
  }

  enter(job: object): void {
    if (this.jobs.has(job)) return;
    this.jobs.add(job);
    this.count++;
  }

  /** The job is held, or handed back: once per job, whoever says so first. */
  leave(job: object): void {
    if (!this.jobs.delete(job)) return;
    this.count--;
    this.release();
  }

  /** Closing: no fetch waits any longer (each finds its Worker closing and takes nothing). */
  open(): void {
    this.max = Infinity;
    this.release();
  }

  private release(): void {
    while (this.waiting.length > 0 && this.count + this.fetching < this.max) {
      this.fetching++;
      this.waiting.shift()!();
    }
  }
}
