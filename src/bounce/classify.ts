// Which bounce class a reply reports: the operator's rules, then the shipped ones, then its
// enhanced status code, then its code. Pure; the daemon keeps one classifier per configuration.
import { type Reply, formatReply, parseReply } from '../core/reply.js';
import type { BounceClass } from './classes.js';
import { type BounceRule, INTERNAL_RULES, REMOTE_RULES } from './rules.js';

/**
 * RFC 3463 `X.subject.detail`, else `X.subject`, to the class it names whatever the reply's words.
 * The status class (4 or 5) is left out: a full mailbox is full today and tomorrow. X.1.10 is
 * Exchange's "recipient not found" far more often than RFC 7505's null MX, which says so in its
 * text. Subjects not listed (protocol, content, other system and routing details) say nothing
 * more specific than the code.
 */
const BY_STATUS: Readonly<Record<string, BounceClass>> = {
  'X.1': 10, // addressing: bad mailbox, syntax, ambiguous, moved
  'X.1.2': 21, // the destination system does not exist
  'X.1.7': 50, // the receiver refuses our sender's address
  'X.1.8': 50,
  'X.2.0': 20, // mailbox status: exists, but cannot take this now
  'X.2.1': 20,
  'X.2.2': 22,
  'X.2.3': 23, // longer than the mailbox's administrative limit
  'X.3.4': 23, // too big for the system
  'X.4.1': 24, // no answer from host
  'X.4.2': 24, // bad connection: as remote servers use it, a timeout
  'X.4.3': 21, // routing server (DNS) failure
  'X.4.4': 21, // unable to route: no MX, no address
  'X.4.7': 24, // delivery time expired (a relay's own expiry)
  'X.7': 50, // security or policy: the receiver blocks the mail
};

function byStatus(enhanced: string): BounceClass | undefined {
  const m = /^[45]\.(\d{1,3})\.(\d{1,3})$/.exec(enhanced);
  if (!m) return undefined;
  return BY_STATUS[`X.${m[1]}.${m[2]}`] ?? BY_STATUS[`X.${m[1]}`];
}

/**
 * Momentum's "transient failure" (70) is "message transmission has been temporarily delayed":
 * what a 4xx does, so every 4xx that neither a rule nor its status code names is one. Its "soft
 * bounce" (20) stays for a mailbox that cannot take mail now, whatever the code. A 5xx no rule named is the "generic
 * bounce" (40); anything else (a 3xx where a 250 was due) is undetermined (1).
 */
function byCode(code: number): BounceClass {
  if (code >= 400 && code < 500) return 70;
  if (code >= 500 && code < 600) return 40;
  return 1;
}

// outcome/settle.ts words an expiry "[internal] exceeded max time without delivery (last: <the last reply>)".
const EXPIRED = /^\[internal\] exceeded max time without delivery \(last: (.*)\)$/s;
// delivery/session.ts reports a session the receiver ended with a reply (Yahoo's 421 at RCPT) as
// lost, its text ending with nodemailer's "Server closed the connection: 421 4.7.0 [TSS04] …".
const QUOTED = /: ([45]\d\d[ -].*)$/s;
/** Classes that say no more than the reply's code. */
const GENERIC: ReadonlySet<BounceClass> = new Set([1, 40, 70]);

/**
 * The class of the receiver's reply an internal one quotes, when that says more than its code.
 * An expired message takes the class of its last reply, as SparkPost's classifier does with
 * "554 5.4.7 [internal] message timeout (last transfail: …)": a mailbox full for a day is still
 * a full mailbox. A last reply that said no more than "later" makes it a timeout (24),
 * Momentum's class for a message that timed out.
 */
function quotedClass(r: Reply, operatorRules: readonly BounceRule[]): BounceClass | undefined {
  const expiry = EXPIRED.exec(r.text);
  const quoted = parseReply(expiry?.[1] ?? QUOTED.exec(r.text)?.[1] ?? '');
  const c = quoted ? bounceClass(quoted, operatorRules) : undefined;
  if (c !== undefined && !GENERIC.has(c)) return c;
  return expiry ? 24 : undefined;
}

function firstMatch(rules: readonly BounceRule[], whole: string): BounceClass | undefined {
  return rules.find((rule) => rule.match.test(whole))?.class;
}

/**
 * The bounce class of a reply: the first of `operatorRules` matching `code enhanced text`, then
 * the shipped rules (Impulse's own replies, text starting `[internal]`, have rules of their own,
 * after the receiver's reply one quotes), then the enhanced status code, then the code.
 */
export function bounceClass(r: Reply, operatorRules: readonly BounceRule[]): BounceClass {
  const whole = formatReply(r);
  const shipped = r.text.startsWith('[internal]')
    ? () => quotedClass(r, operatorRules) ?? firstMatch(INTERNAL_RULES, whole)
    : () => firstMatch(REMOTE_RULES, whole);
  return firstMatch(operatorRules, whole) ?? shipped() ?? byStatus(r.enhanced) ?? byCode(r.code);
}

/** A `bounce_class_rules` entry as the configuration holds it. */
interface ConfiguredRule {
  match: string;
  class: BounceClass;
}

/** The classification in force: the operator's `bounce_class_rules`, replaced by a reload, before the shipped ones. */
export class BounceClassifier {
  private operatorRules: BounceRule[] = [];

  constructor(rules: readonly ConfiguredRule[]) {
    this.reconfigure(rules);
  }

  /** Patterns match case-insensitively, as receivers vary the case of their texts. */
  reconfigure(rules: readonly ConfiguredRule[]): void {
    this.operatorRules = rules.map((r) => ({ match: new RegExp(r.match, 'i'), class: r.class }));
  }

  classify(r: Reply): BounceClass {
    return bounceClass(r, this.operatorRules);
  }
}
