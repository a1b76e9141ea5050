// One open SMTP session serving a binding × domain active queue: it takes messages until the
// queue is empty, then moves to a sibling domain sharing its MX host or waits idle_timeout for
// more, and closes at max_deliveries_per_connection, on a lost session, or when idle too long.
import type { ScopedValues } from '../config/scopes.js';
import { reply } from '../core/reply.js';
import type { ConnectionHandle } from '../delivery/initiator.js';
import { type RecipientReply, runTransaction } from '../delivery/session.js';
import type { Pair } from './domain-state.js';
import type { DeliveryResult, Entry } from './entry.js';

/** What a connection needs from the scheduler that owns it. */
export interface ConnectionOwner {
  options(pair: Pair): Pick<ScopedValues, 'idle_timeout' | 'max_deliveries_per_connection' | 'max_recipients_per_batch'>;
  /** The next message of the connection's queue, or undefined. */
  take(conn: OutboundConnection): Entry | undefined;
  /** Moves the connection to a sibling domain's queue; false when none has work and room. */
  migrate(conn: OutboundConnection): boolean;
  /** Milliseconds until the message throttle allows a message on this pair; 0 takes one. */
  throttle(pair: Pair): number;
  /** A message taken that this connection will not send (throttled past its idle time). */
  giveBack(conn: OutboundConnection, entry: Entry, retryInMs: number): void;
  /** The message's body, read ahead of its turn when the scheduler could. */
  bodyOf(entry: Entry): Promise<Buffer | undefined>;
  complete(conn: OutboundConnection, entry: Entry, result: DeliveryResult): void;
  closed(conn: OutboundConnection): void;
  isClosing(): boolean;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class OutboundConnection {
  deliveries = 0;
  /** Messages taken from the current pair since the connection joined it. */
  takenHere = 0;
  private wake: (() => void) | undefined;
  /** The last transaction was refused part-way, leaving the session mid-envelope: the next starts with RSET. */
  needsReset = false;

  constructor(public pair: Pair, readonly handle: ConnectionHandle<undefined>, private readonly owner: ConnectionOwner) {}

  get isIdle(): boolean {
    return this.wake !== undefined;
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
        if (client.closed || this.owner.isClosing()) break;
        const entry = this.owner.take(this);
        if (!entry) {
          if (this.owner.migrate(this)) continue;
          if (!(await this.idle(this.owner.options(this.pair).idle_timeout))) break;
          continue;
        }
        const opts = this.owner.options(this.pair);
        let wait = this.owner.throttle(this.pair);
        while (wait > 0) {
          if (wait > opts.idle_timeout) {
            this.owner.giveBack(this, entry, wait);
            return;
          }
          await delay(wait);
          wait = this.owner.throttle(this.pair);
        }
        const result = await this.send(entry, opts.max_recipients_per_batch);
        this.owner.complete(this, entry, result);
        if (result.replies.some((r) => r.reply.code >= 200 && r.reply.code < 300)) this.deliveries++;
        if (opts.max_deliveries_per_connection > 0 && this.deliveries >= opts.max_deliveries_per_connection) break;
      }
    } finally {
      this.wake = undefined;
      this.handle.close();
      this.owner.closed(this);
    }
  }

  private async send(entry: Entry, batch: number): Promise<DeliveryResult> {
    const client = this.handle.client!;
    const body = await this.owner.bodyOf(entry);
    if (!body) {
      return { replies: entry.recipients.map((recipient) => ({ recipient, reply: reply(554, '5.3.0', '[internal] message body missing from the store') })) };
    }
    const replies: RecipientReply[] = [];
    for (const recipients of chunks(entry.recipients, batch)) {
      if (this.needsReset && !client.closed) {
        try {
          await client.reset();
          this.needsReset = false;
        } catch {
          client.close();
        }
      }
      const got = await runTransaction(client, { sender: entry.sender, recipients, body }, this.handle.dataTimeout);
      replies.push(...got);
      // A transaction refused part-way leaves the session mid-envelope.
      this.needsReset = got.some((r) => r.reply.code >= 400);
    }
    return { replies, target: this.handle.target, body };
  }

  /** Resolves true when woken with work to look at, false at idle_timeout or session end. */
  private idle(timeoutMs: number): Promise<boolean> {
    const client = this.handle.client!;
    return new Promise((resolve) => {
      const done = (woken: boolean) => {
        clearTimeout(timer);
        client.offClose(onClose);
        this.wake = undefined;
        resolve(woken);
      };
      const onClose = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.wake = () => done(true);
      client.onClose(onClose);
    });
  }
}
