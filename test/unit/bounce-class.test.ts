// Bounce classes as a table: real receivers' replies and Impulse's own, each with the class it
// must get; every shipped row is reached by some reply; operator rules come first; bad
// bounce_class_rules are config errors with their path.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BOUNCE_CLASSES } from '../../src/bounce/classes.js';
import { BounceClassifier, bounceClass } from '../../src/bounce/classify.js';
import { type BounceRule, INTERNAL_RULES, REMOTE_RULES } from '../../src/bounce/rules.js';
import { parseConfigText } from '../../src/config/load.js';
import { type Reply, formatReply, parseReply } from '../../src/core/reply.js';
import { settle } from '../../src/outcome/settle.js';

function r(line: string): Reply {
  const reply = parseReply(line);
  assert.ok(reply, `not a reply: ${line}`);
  return reply;
}

const REMOTE: Array<[string, number]> = [
  // Gmail
  ['550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient\'s email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser - gsmtp', 10],
  ['550 5.2.1 The email account that you tried to reach is disabled. - gsmtp', 10],
  ['452 4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp', 22],
  ['552 5.2.2 The recipient\'s inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm - gsmtp', 22],
  ['552 5.3.4 Your message exceeded Google\'s message size limits. Please visit https://support.google.com/mail/?p=MaxSizeError - gsmtp', 23],
  ['552 5.7.0 This message was blocked because its content presents a potential security issue. Please visit https://support.google.com/mail/?p=BlockedMessage - gsmtp', 53],
  ['550 5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. - gsmtp', 52],
  ['421 4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. - gsmtp', 51],
  ['421 4.7.0 [192.0.2.1] Our system has detected that this message is suspicious due to the very low reputation of the sending domain. To best protect our users from spam, the message has been blocked. - gsmtp', 51],
  ['421 4.7.0 [192.0.2.1] Our system has detected that this message is suspicious due to the nature of the content and/or the links within. To best protect our users from spam, the message has been blocked. - gsmtp', 52],
  ['550 5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM. - gsmtp', 50],
  ['421 4.7.0 Try again later, closing connection. - gsmtp', 70],
  ['421 4.7.0 TLS required for RCPT domain, closing connection. - gsmtp', 50],
  ['450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. - gsmtp', 20],
  ['451 4.4.2 Timeout - closing connection. - gsmtp', 24],
  ['553 5.1.2 We weren\'t able to find the recipient domain. Please check for any spelling errors. - gsmtp', 21],
  ['452 4.5.3 Your message has too many recipients. - gsmtp', 70],
  // Microsoft: Exchange, Exchange Online, Outlook.com
  ['550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', 10],
  ['550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DB5PEPF00000000.eurprd04.prod.outlook.com]', 10],
  ['550 5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from this list please visit https://sender.office.com/ and follow the directions.', 51],
  ['550 5.7.511 Access denied, banned sender[192.0.2.1]. To request removal from this list, forward this message to delist@microsoft.com.', 51],
  ['550 5.7.1 Unfortunately, messages from [192.0.2.1] weren\'t sent. Please contact your Internet service provider since part of their network is on our block list (S3150).', 51],
  ['451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.', 51],
  ['550 5.7.515 Access denied, sending domain example.com doesn\'t meet the required authentication level.', 50],
  ['550 5.7.64 TenantAttribution; Relay Access Denied', 54],
  ['451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (AS761)', 70],
  ['421 4.7.0 RP-001 (COL004-MC1F12) Unfortunately, some messages from 192.0.2.1 weren\'t sent. Please try again.', 70],
  ['554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded', 22],
  ['554 5.7.1 Message rejected due to content restrictions', 52],
  ['550 5.7.1 Message rejected due to unacceptable attachments', 53],
  // Yahoo
  ['554 5.7.9 Message not accepted for policy reasons. See https://senders.yahooinc.com/error-codes', 50],
  ['421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://senders.yahooinc.com/error-codes', 51],
  ['421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints - 4.16.55.1', 51],
  ['553 5.7.1 [TS03] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed.', 51],
  ['554 delivery error: dd This user doesn\'t have a yahoo.com account (nobody@yahoo.com) [0] - mta1010.mail.bf1.yahoo.com', 10],
  ['554 delivery error: dd Sorry your message to gone@yahoo.com cannot be delivered. This mailbox is disabled (554.30). - mta1010.mail.bf1.yahoo.com', 10],
  ['552 1 Requested mail action aborted, mailbox not found', 10],
  // Postfix, Sendmail, Exim, Dovecot, Domino
  ['550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table', 10],
  ['554 5.7.1 <u@example.org>: Relay access denied', 54],
  ['450 4.1.2 <u@nowhere.example>: Recipient address rejected: Domain not found', 21],
  ['554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1', 51],
  ['450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]', 50],
  ['554 5.7.1 <u@example.com>: Recipient address rejected: Access denied', 50],
  ['450 4.2.0 <u@example.com>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/help/example.com.html', 70],
  ['552 5.3.4 Message size exceeds fixed limit', 23],
  ['554 5.5.1 Error: no valid recipients', 30],
  ['550 5.1.1 <nobody@example.com>... User unknown', 10],
  ['550 5.7.1 <u@example.org>... Relaying denied', 54],
  ['553 5.1.8 <s@example.net>... Domain of sender address s@example.net does not exist', 50],
  ['550 No Such User Here', 10],
  ['550 Administrative prohibition', 50],
  ['550 High probability of spam', 52],
  ['552 5.2.2 <u@example.com> Mailbox is full', 22],
  ['550 5.0.0 Recipient not listed in public Name & Address Book', 10],
  ['421 4.4.2 mx.example.com Error: timeout exceeded', 24],
  // Gateways
  ['554 5.7.1 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1', 51],
  ['550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550', 10],
  ['554 5.7.1 Virus found in the message', 53],
  ['550 5.2.0 Mailbox temporarily unavailable', 20],
  // No words to go by: the enhanced status code, then the code
  ['550 5.1.3 Bad recipient address syntax', 10],
  ['554 5.4.7 Delivery time expired', 24],
  ['451 4.3.0 Mail server temporarily rejected message.', 70],
  ['554 5.6.0 Message refused', 40],
  ['550 Requested action not taken', 40],
  ['421 Service not available, closing transmission channel', 70],
];

const MIN = 60_000;
const expired = (last: Reply): Reply => settle([{ recipient: 'u@x', reply: last }], 2 * MIN, 0, 5, {
  retryInterval: MIN, maxRetryInterval: MIN, messageExpiration: MIN,
}).failed[0]!.reply;

const INTERNAL: Array<[Reply, number]> = [
  // An expired message takes the class of its last reply, or timeout when that only said "later"
  [expired(r('450 4.4.1 [internal] Connection Timed Out to mx.example.com')), 24],
  [expired(r('452 4.2.2 The email account that you tried to reach is over quota.')), 22],
  [expired(r('421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints')), 51],
  [expired(r('451 4.3.0 Mail server temporarily rejected message.')), 24],
  // A session the receiver closed with its reply is classified by that reply, when it says more than its code
  [r('451 4.4.2 [internal] connection lost during the transaction (ECONNECTION): Server closed the connection: 421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints'), 51],
  [expired(r('451 4.4.2 [internal] connection lost during the transaction (ECONNECTION): Server closed the connection: 421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred')), 51],
  [r('451 4.4.2 [internal] connection lost during the transaction (ECONNECTION): Server closed the connection: 421 4.3.2 System shutting down'), 70],
  [r('554 5.0.0 [internal] failed by an operator: spam complaint from the recipient'), 25],
  [r('551 5.4.6 [internal] every MX address of example.com is a prohibited (private/loopback) address'), 25],
  [r('556 5.1.10 [internal] example.com does not accept mail (null MX, RFC 7505)'), 21],
  [r('550 5.1.2 [internal] domain nowhere.example does not exist (NXDOMAIN)'), 21],
  [r('451 4.4.3 [internal] DNS MX lookup for example.com failed temporarily (ESERVFAIL)'), 21],
  [r('550 5.4.4 [internal] no MX or A for example.com: none of its MX hosts has an address'), 21],
  [r('450 4.4.1 [internal] Connection Timed Out to mx.example.com (192.0.2.1)'), 24],
  // Host names in Impulse's own replies never meet the receivers' rules
  [r('421 4.4.0 [internal] spam-trap.blocked.example (192.0.2.1): ECONNREFUSED: connect ECONNREFUSED'), 70],
  [r('451 4.4.2 [internal] timed out after RCPT: no data from the server within data_timeout (Timeout)'), 24],
  [r('451 4.4.2 [internal] connection lost after DATA (ECONNRESET): read ECONNRESET'), 70],
  [r('451 4.4.1 [internal] 50 consecutive connection failures to the MXs of example.com; domain delayed'), 70],
  [r('451 4.7.5 [internal] TLS certificate verification failed for mx.example.com: certificate has expired'), 70],
  [r('451 4.7.4 [internal] TLS is required but mx.example.com does not offer STARTTLS'), 70],
  [r('552 5.3.4 [internal] mx.example.com takes messages of up to 1000 bytes (SIZE); this one has 2000'), 23],
  [r('553 5.6.7 [internal] mx.example.com does not offer SMTPUTF8, which the UTF-8 address(es) of this message need'), 40],
  [r('554 5.3.0 [internal] message body missing from the store'), 40],
];

test('real replies of receivers get the bounce class their words or status code name', () => {
  for (const [line, expected] of REMOTE) assert.equal(bounceClass(r(line), []), expected, line);
});

test('Impulse\'s own replies are classified by their rules and status codes, and an expiry by its last reply', () => {
  for (const [reply, expected] of INTERNAL) assert.equal(bounceClass(reply, []), expected, formatReply(reply));
  assert.match(INTERNAL[0]![0].text, /^\[internal\] exceeded max time without delivery \(last: 450 4\.4\.1 /, 'settle words an expiry as classify reads it');
});

test('a reply with no usable code is undetermined', () => {
  assert.equal(bounceClass({ code: 354, enhanced: '3.0.0', text: 'go ahead' }, []), 1);
});

test('every shipped row is the first match of some reply in the tables above', () => {
  const firstRow = (rules: readonly BounceRule[], reply: Reply) => rules.findIndex((rule) => rule.match.test(formatReply(reply)));
  const reached = (rules: readonly BounceRule[], replies: Reply[]) => new Set(replies.map((reply) => firstRow(rules, reply)));
  const remote = reached(REMOTE_RULES, REMOTE.map(([line]) => r(line)));
  const internal = reached(INTERNAL_RULES, INTERNAL.map(([reply]) => reply));
  assert.deepEqual(REMOTE_RULES.map((_, i) => i).filter((i) => !remote.has(i)), [], 'remote rows no reply reaches');
  assert.deepEqual(INTERNAL_RULES.map((_, i) => i).filter((i) => !internal.has(i)), [], 'internal rows no reply reaches');
});

test('operator rules come before the shipped ones, match case-insensitively, and a reconfigure replaces them', () => {
  const c = new BounceClassifier([
    { match: 'USER UNKNOWN', class: 25 },
    { match: '^554 5\\.0\\.0 \\[internal\\] failed by an operator: complaint', class: 51 },
  ]);
  assert.equal(c.classify(r('550 5.1.1 <u@example.com>... User unknown')), 25);
  assert.equal(c.classify(r('554 5.0.0 [internal] failed by an operator: complaint')), 51);
  assert.equal(c.classify(r('552 5.2.2 Mailbox is full')), 22, 'unmatched: the shipped rules');
  // The whole expiry text, last reply included, is the operator rules' to match; else its last reply is classified under them.
  assert.equal(c.classify(expired(r('450 4.1.1 <u@example.com>... User unknown'))), 25);
  c.reconfigure([]);
  assert.equal(c.classify(r('550 5.1.1 <u@example.com>... User unknown')), 10);
});

test('bounce_class_rules: a bad pattern or an unknown class is a config error naming its path', () => {
  const bad = parseConfigText([
    'bounce_class_rules:',
    '  - { match: "(", class: 10 }',
    '  - { match: "ok", class: 15 }',
    '  - { match: "ok", class: 80 }',
    '  - { match: "ok", class: "10" }',
    '  - { match: "ok", class: 10, action: suspend }',
    '  - { class: 10 }',
  ].join('\n'), '/tmp/bounce.yaml');
  assert.ok(!bad.ok);
  const errors = bad.errors.join('\n');
  assert.ok(bad.errors.includes('bounce_class_rules[0].match: invalid regular expression /(/: Unterminated group'), errors);
  for (const i of [1, 2]) assert.match(errors, new RegExp(`^bounce_class_rules\\[${i}\\]\\.class: expected a bounce class: 1 \\(undetermined\\), 10 \\(invalid recipient\\)`, 'm'));
  assert.match(errors, /^bounce_class_rules\[3\]\.class: .*expected number/m);
  assert.ok(bad.errors.includes('bounce_class_rules[4].action: unknown key'), errors);
  assert.match(errors, /^bounce_class_rules\[5\]\.match: /m);

  const good = parseConfigText(`bounce_class_rules:\n${Object.keys(BOUNCE_CLASSES).map((n) => `  - { match: "x${n}", class: ${n} }`).join('\n')}\n`, '/tmp/ok.yaml');
  assert.ok(good.ok, good.ok ? '' : good.errors.join('; '));
  assert.deepEqual(good.config.bounce_class_rules.map((rule) => rule.class), Object.keys(BOUNCE_CLASSES).map(Number));
  const none = parseConfigText('', '/tmp/empty.yaml');
  assert.ok(none.ok);
  assert.deepEqual(none.config.bounce_class_rules, []);
});
