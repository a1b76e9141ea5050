// What one attempt at a message gave: a reply for each recipient, and how the attempt came about.
import type { Target } from '../delivery/route.js';
import type { RecipientReply } from '../delivery/session.js';

/**
 * Why held mail was charged an attempt without a transaction of its own: Momentum's actions on a
 * failed connection (requeue1, purge_domain), a delayed domain (delay_domain), an operator's
 * fail (admin_fail), or a shaping rule's bounce (shaping_bounce).
 */
export type Action = 'requeue1' | 'purge_domain' | 'delay_domain' | 'admin_fail' | 'shaping_bounce';

export interface Attempt {
  replies: RecipientReply[];
  /** The address that took the transaction, or the last one tried. */
  target?: Target | undefined;
  /** CONN_ERROR_* | CONN_ACTION_* when no transaction took place. */
  flags?: number | undefined;
  action?: Action | undefined;
  /** Fail without a bounce (an operator's `fail --quiet`). */
  quiet?: boolean | undefined;
  /** The server that took the transaction offered DSN: it, not Impulse, reports success from here on. */
  hopOffersDsn?: boolean | undefined;
}

/** Every recipient gets the same reply: an attempt charged rather than made. */
export function chargedAttempt(recipients: readonly string[], reply: RecipientReply['reply'], action: Action, flags?: number, quiet?: boolean): Attempt {
  return { replies: recipients.map((recipient) => ({ recipient, reply })), action, flags, quiet };
}
