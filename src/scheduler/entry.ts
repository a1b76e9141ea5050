// What the scheduler holds for one queued job, and what it hands back: the outcome of an attempt,
// or a park (back to Redis without an attempt charged, for when its queue has room).
import type { Binding } from '../binding/registry.js';
import type { Target } from '../delivery/route.js';
import type { RecipientReply } from '../delivery/session.js';

export interface DeliveryResult {
  replies: RecipientReply[];
  /** The address that took the transaction, or the last one tried. */
  target?: Target | undefined;
  /** CONN_ERROR_* | CONN_ACTION_* when no transaction took place. */
  flags?: number | undefined;
  /** The message body, when it was read for the attempt. */
  body?: Buffer | undefined;
}

/** Why mail left the active queue without a transaction of its own; admin_fail: an operator failed it. */
export type Action = 'requeue1' | 'purge_domain' | 'delay_domain' | 'admin_fail';

export type Outcome =
  /** quiet: fail without a bounce (an operator's `fail --quiet`). */
  | { kind: 'attempted'; result: DeliveryResult; action?: Action | undefined; quiet?: boolean | undefined }
  /**
   * With `filed`, the park is filed with its pair in Redis, which promotes it when it has room
   * (`until` is then only a fallback); `filed` is called once the id is there.
   */
  | { kind: 'parked'; until: number; reason: string; filed?: (() => void) | undefined };

export interface Entry {
  readonly qid: string;
  readonly domain: string;
  readonly binding: Binding;
  readonly sender: string;
  readonly recipients: string[];
  /** Failed attempts so far. */
  readonly attempts: number;
  /** Set when the job comes back from the delayed set: a retry or a park. */
  readonly returning?: 'retry' | 'parked' | undefined;
  /** Called exactly once. */
  settle(outcome: Outcome): void;
}
