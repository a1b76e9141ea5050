// One connection's session loop: it takes the next message of the ready queue it serves and sends
// it; when the queue is empty it moves to a sibling domain or waits idle_timeout for more; it closes
// at max_deliveries_per_connection, on a lost session, or when idle too long.
import type { Clock } from '../core/clock.js';
import { reply } from '../core/reply.js';
import type { ScopedValues } from '../config/scopes.js';
import type { ConnectionHandle } from '../delivery/initiator.js';
import { type RecipientReply, runTransaction } from '../delivery/session.js';
import type { Attempt } from '../outcome/attempt.js';
import type { Entry } from './entry.js';
import type { QueueConnection, ReadyQueue } from './ready-queue.js';

/** What a dispatcher needs from the scheduler that owns it. */
export interface DispatcherOwner {
  options(queue: ReadyQueue): Pick<ScopedValues, 'idle_timeout' | 'max_deliveries_per_connection' | 'max_recipients_per_batch'>;
  /** The next message for the dispatcher's queue, or undefined; may first lend the dispatcher to a sibling. */
  take(d: Dispatcher): Entry | undefined;
  /** Moves the dispatcher to a sibling domain's queue; false when none has work and room (settled once a cluster lease is had or refused). */
  migrate(d: Dispatcher): boolean | Promise<boolean>;
  /** Milliseconds until the message throttles (this node's, the cluster's) allow a message on the queue; 0 takes one. */
  throttleWait(queue: ReadyQueue): number | Promise<number>;
  /** A message taken that this connection will not send (throttled past its idle time). */
  giveBack(d: Dispatcher, entry: Entry, retryInMs: number): void;
  complete(d: Dispatcher, entry: Entry, attempt: Attempt): void;
  /** A message whose job this daemon no longer holds: it is neither sent nor written back. */
  abandon(d: Dispatcher, entry: Entry): void;
  closed(d: Dispatcher): void;
  isStopping(): boolean;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export class Dispatcher implements QueueConnection {
  deliveries = 0;
  /** Messages taken from the current queue since the connection joined it. */
  takenHere = 0;
  private wake: (() => void) | undefined;
  /** The last transaction was refused part-way, leaving the session mid-envelope: the next starts with RSET. */
  private needsReset = false;
  /** Domains the session has served: a sibling's TLS policy is judged on its first ride only. */
  private readonly served: Set<string>;

  constructor(
    private current: ReadyQueue,
    readonly handle: ConnectionHandle,
    private readonly owner: DispatcherOwner,
    private readonly clock: Pick<Clock, 'after'>,
  ) {
    this.served = new Set([current.domain]);
  }

  get queue(): ReadyQueue {
    return this.current;
  }

  /** Whether the session has not served `domain` yet (it has served the domain it was opened for), noting that it now has. */
  firstVisit(domain: string): boolean {
    if (this.served.has(domain)) return false;
    this.served.add(domain);
    return true;
  }

  get isIdle(): boolean {
    return this.wake !== undefined;
  }

  /**
   * Serves `queue` from now on (a sibling's). No RSET: a session whose last transaction ended (250,
   * or refused at DATA) holds no envelope, whatever domain it served; one refused part-way is reset
   * before the next transaction anyway.
   */
  join(queue: ReadyQueue): void {
    this.current = queue;
    this.takenHere = 0;
    this.handle.domain = queue.record;
  }

  /** Ends an idle wait: more work arrived, the connection moved, or the daemon is stopping. */
  nudge(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async run(): Promise<void> {
    const client = this.handle.client!;
    try {
      for (;;) {
        if (client.closed || this.owner.isStopping()) break;
        const entry = this.owner.take(this);
        if (!entry) {
          const moved = this.owner.migrate(this);
          if (moved === true || (moved !== false && await moved)) continue;
          if (!(await this.idle(this.owner.options(this.current).idle_timeout))) break;
          continue;
        }
        const opts = this.owner.options(this.current);
        let wait = await this.owner.throttleWait(this.current);
        while (wait > 0) {
          if (wait > opts.idle_timeout) {
            this.owner.giveBack(this, entry, wait);
            return;
          }
          await new Promise<void>((resolve) => this.clock.after(wait, resolve));
          wait = await this.owner.throttleWait(this.current);
        }
        const attempt = await this.send(entry, opts.max_recipients_per_batch);
        if (attempt === 'abandoned') {
          this.owner.abandon(this, entry);
          continue;
        }
        this.owner.complete(this, entry, attempt);
        if (attempt.replies.some((r) => r.reply.code >= 200 && r.reply.code < 300)) this.deliveries++;
        if (opts.max_deliveries_per_connection > 0 && this.deliveries >= opts.max_deliveries_per_connection) break;
      }
    } finally {
      this.wake = undefined;
      this.handle.close();
      this.owner.closed(this);
    }
  }

  /** The attempt, or 'abandoned' when the job's lock is no longer this daemon's before a transaction starts. */
  private async send(entry: Entry, batch: number): Promise<Attempt | 'abandoned'> {
    const client = this.handle.client!;
    // Asked together, the lock check and the body read leave in the same turn and are waited for
    // together; a body read for a job no longer held is only dropped.
    const [held, body] = await Promise.all([entry.stillHeld(), entry.body.get()]);
    if (!held) return 'abandoned';
    if (!body) {
      // The node that took the job over may have delivered it and released its body meanwhile.
      if (!(await entry.stillHeld())) return 'abandoned';
      return { replies: entry.recipients.map((recipient) => ({ recipient, reply: reply(554, '5.3.0', '[internal] message body missing from the store') })) };
    }
    const replies: RecipientReply[] = [];
    // A message split in batches is checked once: after its first transaction its attempt goes
    // on, and the outcome's write is refused should the lock have gone by then.
    for (const recipients of chunks(entry.recipients, batch)) {
      if (this.needsReset && !client.closed) {
        try {
          await client.reset();
          this.needsReset = false;
        } catch {
          client.close();
        }
      }
      const got = await runTransaction(client, { sender: entry.sender, recipients, body, params: entry.params }, this.handle.dataTimeout,
        `${this.handle.target.host} [${this.handle.target.address}]`);
      replies.push(...got);
      // A transaction refused part-way leaves the session mid-envelope.
      this.needsReset = got.some((r) => r.reply.code >= 400);
    }
    return { replies, target: this.handle.target, hopOffersDsn: client.extensions.includes('DSN') };
  }

  /** Resolves true when woken with work to look at, false at idle_timeout or session end. */
  private idle(timeoutMs: number): Promise<boolean> {
    const client = this.handle.client!;
    return new Promise((resolve) => {
      const done = (woken: boolean) => {
        timer.cancel();
        client.offClose(onClose);
        this.wake = undefined;
        resolve(woken);
      };
      const onClose = () => done(false);
      const timer = this.clock.after(timeoutMs, () => done(false));
      this.wake = () => done(true);
      client.onClose(onClose);
    });
  }
}
