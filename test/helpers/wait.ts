// Helpers record events into arrays; tests await a condition over those arrays instead of sleeping.
// Producers call notify() after every change, which re-evaluates each pending condition.
export class Condition {
  private readonly pending = new Set<() => void>();

  notify(): void {
    for (const attempt of [...this.pending]) attempt();
  }

  /**
   * Resolves with the first non-undefined value of check(). A throwing check rejects at once,
   * which lets a producer that died fail its waiters early rather than at the timeout.
   */
  until<T>(check: () => T | undefined, timeoutMs: number, describe: () => string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        this.pending.delete(attempt);
      };
      const attempt = () => {
        let value: T | undefined;
        try {
          value = check();
        } catch (err) {
          finish();
          reject(err);
          return;
        }
        if (value !== undefined) {
          finish();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms: ${describe()}`));
      }, timeoutMs);
      this.pending.add(attempt);
      attempt();
    });
  }
}
