// Momentum's bounce classes: the kinds of failure a reply can report, by number and name.

/**
 * Momentum's bounce classification codes, with the numbers its logs and SparkPost's events use.
 * Its subscribe and unsubscribe classes (80, 90) are kinds of incoming list mail, never an answer
 * to delivery, so they are left out; auto-reply (60) and challenge-response (100) also describe
 * incoming mail but stay, for operators whose receivers answer that way in the SMTP dialogue.
 */
export const BOUNCE_CLASSES = {
  1: 'undetermined',
  10: 'invalid recipient',
  20: 'soft bounce',
  21: 'DNS failure',
  22: 'mailbox full',
  23: 'too large',
  24: 'timeout',
  25: 'admin failure',
  30: 'no recipient',
  40: 'generic bounce',
  50: 'mail block',
  51: 'spam block',
  52: 'spam content',
  53: 'prohibited attachment',
  54: 'relay denied',
  60: 'auto-reply',
  70: 'transient failure',
  100: 'challenge-response',
} as const;

export type BounceClass = keyof typeof BOUNCE_CLASSES;

export function isBounceClass(n: number): n is BounceClass {
  return Object.hasOwn(BOUNCE_CLASSES, n);
}
