// A value read at most once: when first asked for, or earlier when asked to start (read-ahead).

export class Lazy<T> {
  private value: Promise<T> | undefined;

  constructor(private readonly load: () => Promise<T>) {}

  /** Starts the read now; a failure is kept for whoever asks, not reported here. */
  start(): void {
    if (this.value) return;
    this.value = this.load();
    this.value.catch(() => {});
  }

  get(): Promise<T> {
    this.start();
    return this.value!;
  }
}
