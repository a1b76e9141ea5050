// A job held by the scheduler, and what the scheduler hands back for it: an attempt made (or
// charged), or a park (back to Redis with no attempt charged, until its ready queue has room).
import type { Binding } from '../binding/registry.js';
import type { Lazy } from '../core/lazy.js';
import type { EnvelopeParams } from '../delivery/envelope.js';
import type { Attempt } from '../outcome/attempt.js';

/** Why a job could not be held now; the words appear in `parked` log records. */
export type ParkReason = 'active queue full' | 'suspended' | 'shaping suspended' | 'domain delayed' | 'stopping';

export type Outcome =
  | { kind: 'attempted'; attempt: Attempt }
  | { kind: 'parked'; until: number; reason: ParkReason }
  /** The job's lock was found held by another copy (another node, after this one's lapsed): nothing is written. */
  | { kind: 'abandoned' };

/** Why the job was in BullMQ's delayed set before this fetch: its retry, or a park (brought back by a promotion, or by its fallback time). */
export type Returning = { from: 'retry' } | { from: 'park'; promoted: boolean };

export interface Entry {
  readonly jobId: string;
  readonly qid: string;
  readonly domain: string;
  readonly binding: Binding;
  readonly sender: string;
  readonly recipients: readonly string[];
  /** The ESMTP parameters the message was received with, passed on to the next hop. */
  readonly params: EnvelopeParams;
  /** Attempts made so far. */
  readonly attempts: number;
  readonly returning?: Returning | undefined;
  /**
   * Whether this daemon still holds the job's lock in Redis: asked before each transaction, so a
   * node whose lock lapsed (and whose job another node took) abandons the attempt before DATA.
   */
  stillHeld(): Promise<boolean>;
  /** The message, read from the store when first wanted, or ahead of its turn. */
  readonly body: Lazy<Buffer | undefined>;
  /**
   * Hands the outcome back; called exactly once. Resolves true once the job waits in BullMQ's
   * delayed set (a park, or a retry), false once it is finished; not at all if another daemon took
   * the job meanwhile.
   */
  resolve(outcome: Outcome): Promise<boolean>;
}
