// The shipped bounce class rules: patterns over a whole reply ("550 5.1.1 text") from the texts
// receivers really send, and the few of Impulse's own replies that their status code misnames.
import type { BounceClass } from './classes.js';

/** A reply matching `match` (anywhere in `code enhanced text`) has class `class`. */
export interface BounceRule {
  readonly match: RegExp;
  readonly class: BounceClass;
}

/**
 * Impulse's own replies (text starting `[internal]`) that their enhanced status code would
 * classify wrongly. They never meet REMOTE_RULES: their text names domains and hosts, and a
 * host called spam-trap.example must not make a refused connection a spam block. Expiry, which
 * takes the class of the last reply, is classify.ts's.
 */
export const INTERNAL_RULES: readonly BounceRule[] = [
  // admin/actions.ts, `impulse fail` and `message fail`: "554 5.0.0 [internal] failed by an operator: <note>"
  { match: /^\d{3} \S+ \[internal\] failed by an operator/, class: 25 },
  // delivery/initiator.ts, prohibited_hosts: "551 5.4.6 [internal] every MX address of d is a prohibited (private/loopback) address"
  { match: /^\d{3} \S+ \[internal\] every MX address of \S+ is a prohibited/, class: 25 },
  // delivery/route.ts, RFC 7505: "556 5.1.10 [internal] d does not accept mail (null MX, RFC 7505)"; Momentum words it "550 5.4.4"
  { match: /^\d{3} \S+ \[internal\] .*\(null MX/, class: 21 },
  // delivery/session.ts: "451 4.4.2 [internal] connection lost <stage> (ECONNRESET)": dropped, not timed out
  { match: /^\d{3} \S+ \[internal\] connection lost/, class: 70 },
  // scheduler/maintainer.ts, mx_failures_to_delay: "451 4.4.1 [internal] 50 consecutive connection failures to the MXs of d; domain delayed"
  { match: /^\d{3} \S+ \[internal\] \d+ consecutive connection failures/, class: 70 },
  // delivery/tls-failure.ts and tls-requirement.ts: "451 4.7.5"/"451 4.7.4": Impulse's own TLS policy (tls, tls_verify,
  // MTA-STS, DANE) holds the mail; no receiver blocked it
  { match: /^4\d\d 4\.7\.[45] \[internal\]/, class: 70 },
];

/**
 * Receivers' replies, most specific first: the first match wins. Auto-reply (60) and
 * challenge-response (100) are kinds of incoming mail, not replies, so no row names them; an
 * operator whose receivers answer that way in the dialogue adds a rule.
 */
export const REMOTE_RULES: readonly BounceRule[] = [
  // Postfix at DATA after every RCPT was refused: "554 5.5.1 Error: no valid recipients"; Sendmail "503 5.0.0 Need RCPT (recipient)"
  { match: /no valid recipients|need rcpt/i, class: 30 },
  // Postfix "554 5.7.1 <u@d>: Relay access denied"; Sendmail "550 5.7.1 <u@d>... Relaying denied"; Exchange "550 5.7.54 SMTP;
  // Unable to relay recipient in non-accepted domain"; Exchange Online "550 5.7.64 TenantAttribution; Relay Access Denied"
  { match: /relay(ing)? (access )?denied|unable to relay|relaying (is )?not (allowed|permitted)|not permitted to relay/i, class: 54 },
  // Exchange Online Protection's directory-based edge blocking, for an address its tenant does not have (a domain it does not
  // accept says "Relay Access Denied"): "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)"
  { match: /^5\d\d 5\.4\.1 Recipient address rejected: Access denied/i, class: 10 },
  // Postfix "450 4.1.2 <u@d>: Recipient address rejected: Domain not found" (4.1.8 for a sender's); Gmail "553 5.1.2 We weren't
  // able to find the recipient domain"; Exchange "554 5.4.4 SMTPSEND.DNS.NonExistentDomain"; RFC 7505 "556 5.1.10 … null MX"
  { match: /domain not found|find the recipient domain|NonExistentDomain|host or domain name not found|no such domain|null MX/i, class: 21 },
  // Gmail "550 5.1.1 The email account that you tried to reach does not exist" and "550 5.2.1 … is disabled"
  { match: /account that you tried to reach (does not exist|is disabled)/i, class: 10 },
  // Exchange "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "550 5.1.1 RESOLVER.ADR.RecipNotFound"
  { match: /recipient ?not ?found|RecipNotFound/i, class: 10 },
  // Postfix "550 5.1.1 <u@d>: Recipient address rejected: User unknown in virtual mailbox table"; Sendmail "550 5.1.1 <u@d>...
  // User unknown"; cPanel's Exim "550 No Such User Here"; Dovecot LMTP "550 5.1.1 <u@d> User doesn't exist"; Yahoo "554 delivery
  // error: dd This user doesn't have a yahoo.com account" and "552 1 Requested mail action aborted, mailbox not found";
  // Mimecast "550 Invalid Recipient"; Domino "550 5.0.0 Recipient not listed in public Name & Address Book"
  {
    match: /user unknown|unknown (user|recipient|mailbox)|no such (user|mailbox|recipient|account|address)|(user|mailbox|recipient|account|address) (does not|doesn't) exist|doesn't have an? \S+ account|mailbox not found|invalid (recipient|mailbox)|not listed in public name/i,
    class: 10,
  },
  // Yahoo "554 delivery error: dd Sorry your message to u@d cannot be delivered. This mailbox is disabled (554.30)"
  { match: /mailbox (is |has been )?disabled|account (is |has been )?disabled/i, class: 10 },
  // Gmail "452 4.2.2 The email account that you tried to reach is over quota" and "552 5.2.2 The recipient's inbox is out of
  // storage space"; Exchange "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException"; Dovecot "552 5.2.2
  // <u@d> Mailbox is full" and "Quota exceeded (mailbox for user is full)"; Yahoo "452 4.2.2 Over quota"
  { match: /over ?quota|quota ?exceeded|mailbox (is )?full|out of storage space|mailbox size limit/i, class: 22 },
  // Gmail "552 5.3.4 Your message exceeded Google's message size limits"; Postfix "552 5.3.4 Message size exceeds fixed limit";
  // Exchange "552 5.3.4 Message size exceeds fixed maximum message size"
  { match: /message size|message length exceeds|(message|mail) (is )?too (big|large)/i, class: 23 },
  // Gmail "552 5.7.0 This message was blocked because its content presents a potential security issue" (executables, macros);
  // Exchange "550 5.7.1 Message rejected due to unacceptable attachments"; scanners' "554 5.7.1 Virus found": the class for a
  // message refused for what it carries
  { match: /attachment|potential security issue|\bvirus\b|malware|(banned|blocked|prohibited) file/i, class: 53 },
  // Yahoo's deferrals for complaints and volume: "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to
  // unexpected volume or user complaints - 4.16.55.1", and "[TS01]"…"[TS03]" ("553 5.7.1 [TS03] All messages from 192.0.2.1
  // will be permanently deferred")
  { match: /\[TSS?0\d\]/i, class: 51 },
  // Exchange Online's block list: "550 5.7.606 Access denied, banned sending IP [192.0.2.1]" (5.7.606 to 5.7.649), "550 5.7.511
  // Access denied, banned sender", "550 5.7.708 Access denied, traffic not accepted from this IP"
  { match: /^5\d\d 5\.7\.(60[6-9]|6[1-4]\d|511|708)\b|banned sending ip|banned sender/i, class: 51 },
  // Outlook.com "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider
  // since part of their network is on our block list (S3150)" (S3140 likewise; "451 4.7.651 … (S3114)" for reputation)
  { match: /\(S3\d{3}\)|on our block ?list/i, class: 51 },
  // DNS block lists as Postfix and Exim report them: "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using
  // zen.spamhaus.org"; Barracuda "554 Service unavailable; Client host [192.0.2.1] blocked using Barracuda Reputation";
  // Proofpoint "554 5.7.1 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1"
  { match: /blocked using|spamhaus|spamcop|barracuda|\bsorbs\b|\bdnsbl\b|\brbl\b|black ?listed|block ?listed|ipcheck\.proofpoint|listed (at|on|in) /i, class: 51 },
  // Gmail "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address" and "421
  // 4.7.0 … suspicious due to the very low reputation of the sending domain"; Exchange Online "451 4.7.650 The mail server
  // [192.0.2.1] has been temporarily rate limited due to IP reputation"
  { match: /unsolicited mail originating from your IP|reputation/i, class: 51 },
  // Gmail "550 5.7.1 Our system has detected that this message is likely unsolicited mail" and "421 4.7.0 … suspicious due to
  // the nature of the content and/or the links within"; Exchange Online "550 5.7.350 Remote server returned message detected as
  // spam"; Exchange "554 5.7.1 Message rejected due to content restrictions"; Exim with SpamAssassin "550 High probability of spam"
  { match: /likely unsolicited|nature of the content|\bspam\b|content restrictions|rejected due to content|message content rejected/i, class: 52 },
  // Yahoo "554 5.7.9 Message not accepted for policy reasons. See https://senders.yahooinc.com/error-codes"; Gmail "550 5.7.1 This
  // message violates example.com email policy"; Mimecast "550 Rejected by header based Anti-Spoofing policy"
  { match: /policy/i, class: 50 },
  // Gmail "550 5.7.26 This mail has been blocked because the sender is unauthenticated"; Exchange Online "550 5.7.515 Access
  // denied, sending domain example.com doesn't meet the required authentication level"; Postfix "450 4.7.1 Client host rejected:
  // cannot find your hostname" and "554 5.7.1 <u@d>: Recipient address rejected: Access denied"; Exim "550 Administrative
  // prohibition" and "550 Sender verify failed"
  {
    match: /unauthenticated|authentication level|\b(spf|dkim|dmarc)\b|reverse dns|ptr record|client host rejected|sender address rejected|sender verify failed|administrative prohibition|access denied|\bblocked\b/i,
    class: 50,
  },
  // Gmail "451 4.4.2 Timeout - closing connection"; Postfix "421 4.4.2 mx.example.com Error: timeout exceeded"; Exchange "451
  // 4.7.0 Timeout waiting for client input"
  { match: /time ?out|timed out/i, class: 24 },
  // Gmail "450 4.2.1 The user you are trying to contact is receiving mail too quickly" (or "at a rate that prevents additional
  // messages from being delivered"); a permanent code with a passing reason, as in "550 5.2.0 Mailbox temporarily unavailable"
  { match: /receiving mail (too quickly|at a rate)|^5\d\d .*\b(temporar(il)?y|try (again )?later)\b/i, class: 20 },
  // Postgrey "450 4.2.0 <u@d>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/help/d.html"; Gmail
  // "421 4.7.0 Try again later, closing connection" and "421 4.4.5 Server busy, try again later"; Exchange Online "451 4.7.500
  // Server busy. Please try again later from [192.0.2.1]. (AS761)"; Outlook.com "421 4.7.0 RP-001 … Please try again. We have
  // limits for how many messages can be sent per hour and per day"
  { match: /^4\d\d .*(gr[ae]y ?list|try (again )?later|try again|server busy|temporar|too many (connections|messages)|rate limit|\bRP-00\d)/i, class: 70 },
];
