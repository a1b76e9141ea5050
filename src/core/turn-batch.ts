// Requests made in one turn of the event loop, answered together by one call: one command where
// there would be one each. Jobs start and finish in bursts (one Redis reply read finishes several,
// one pump turn starts several transactions), and each command costs the client and Redis more
// than the little work most of these do.

interface Pending<Q, A> {
  request: Q;
  resolve(answer: A): void;
  reject(err: Error): void;
}

export class TurnBatch<Q, A> {
  private pending: Array<Pending<Q, A>> = [];

  /** `answer` gets the turn's requests in order and returns their answers in the same order. */
  constructor(private readonly answer: (requests: Q[]) => Promise<A[]>) {}

  ask(request: Q): Promise<A> {
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.flush());
      this.pending.push({ request, resolve, reject });
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    Promise.resolve()
      .then(() => this.answer(batch.map((p) => p.request)))
      .then(
        (answers) => batch.forEach((p, i) => p.resolve(answers[i]!)),
        (err: Error) => batch.forEach((p) => p.reject(err)),
      );
  }
}
