// Interop A: 500 messages through a real Postfix, Impulse and smtp-sink; each recipient gets one copy, byte-identical apart from the Received headers, and Postfix ends with an empty queue.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type CorpusMessage, buildCorpus } from './corpus.js';
import { injectAll } from './inject.js';
import { asDumped, type SinkDump } from './smtp-sink.js';
import { batchShapes, parameterSets } from './tap.js';
import { type Interop, STANDARD_SINKS, buildInterop, postfixQueueId, stripReceived } from './world.js';

const COUNT = 500;
const DOMAINS = ['a.test', 'b.test', 'c.test'];

let net: Interop;

before(async () => {
  net = await buildInterop({
    sinks: { full: STANDARD_SINKS.full!, full2: STANDARD_SINKS.full2!, sender: STANDARD_SINKS.sender! },
    postfix: true,
  });
});

after(async () => {
  await net?.close();
});

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

/** What smtp-sink stores of a message: every <CR> dropped. */
const asStored = (raw: Buffer) => Buffer.from(raw.toString('latin1').replace(/\r/g, ''), 'latin1');

function messageIdOf(message: Buffer): string | undefined {
  return /^Message-ID: (.*)$/im.exec(message.toString('latin1'))?.[1];
}

test(`${COUNT} messages relayed Postfix -> Impulse -> smtp-sink: one copy per recipient, bodies intact, Postfix's queue empty`, { timeout: 240_000 }, async (t) => {
  const postfix = net.postfix!;
  const corpus = buildCorpus({ count: COUNT, seed: 'relay', domains: DOMAINS, senderDomain: 'sender.test' });
  const started = performance.now();
  const replies = await injectAll({ host: '127.0.0.1', port: postfix.port, messages: corpus, sessions: 4 });
  const postfixIds = replies.map(postfixQueueId);
  const byPostfixId = new Map(postfixIds.map((id, i) => [id, corpus[i]!]));
  const recipients = corpus.reduce((n, m) => n + m.recipients.length, 0);
  const injected = performance.now();

  // Postfix: one `status=sent` line per recipient, each relayed to Impulse (through the tap).
  const sentLine = (l: string) => / status=sent /.test(l) && byPostfixId.has(/: ([0-9A-F]+): to=</.exec(l)?.[1] ?? '');
  await postfix.waitForLines(sentLine, recipients, 180_000);

  // Impulse: one delivery per message and destination domain (no batch holds over 100 recipients).
  const jobs = corpus.reduce((n, m) => n + new Set(m.recipients.map(domainOf)).size, 0);
  const isRelayed = (r: Record<string, any>) => r.event === 'delivery' && DOMAINS.includes(r.domain);
  await net.daemon.waitForLogs(isRelayed, jobs, 180_000);
  const delivered = performance.now();

  // Postfix's queue empties: the injected messages and the notices it made for NOTIFY=SUCCESS
  // (while Impulse does not offer DSN, Postfix reports `relayed` itself).
  await postfix.drained(60_000);
  assert.deepEqual(postfix.queue(), [], "Postfix's queue is empty");
  const notices = postfix.lines.flatMap((l) => /delivery status notification: ([0-9A-F]+)/.exec(l)?.[1] ?? []);

  // Postfix's log: exactly one status=sent per recipient, none deferred or bounced.
  const sentTo = new Map<string, number>();
  for (const l of postfix.lines.filter(sentLine)) {
    const [, id, to] = /: ([0-9A-F]+): to=<([^>]*)>/.exec(l)!;
    const key = `${id} ${to!.toLowerCase()}`;
    sentTo.set(key, (sentTo.get(key) ?? 0) + 1);
    assert.match(l, new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${net.upstreamTap!.port}, .*dsn=2\\.0\\.0, status=sent \\(250 2\\.0\\.0 Ok queued as \\w+\\)`));
  }
  for (const [i, m] of corpus.entries()) {
    for (const r of m.recipients) assert.equal(sentTo.get(`${postfixIds[i]} ${r.toLowerCase()}`), 1, `Postfix status=sent lines for ${r}`);
  }
  const troubled = postfix.lines.filter((l) => byPostfixId.has(/: ([0-9A-F]+): /.exec(l)?.[1] ?? '') && /status=(deferred|bounced)/.test(l));
  assert.deepEqual(troubled, []);
  // Neither side complained: no Postfix warning, no Impulse record above info.
  assert.deepEqual(postfix.lines.filter((l) => /: (warning|error|fatal|panic): /.test(l)), []);
  assert.deepEqual(net.daemon.logs.filter((r) => !['trace', 'debug', 'info'].includes(r.level)), []);

  // The sinks: each recipient exactly once, each copy the injected message after two Received headers.
  const dumps = [...net.sinks.full!.dumps(), ...net.sinks.full2!.dumps()];
  const byRecipient = new Map<string, SinkDump[]>();
  for (const d of dumps) for (const r of d.rcpts) byRecipient.set(r.address.toLowerCase(), [...(byRecipient.get(r.address.toLowerCase()) ?? []), d]);
  const byMessageId = new Map(corpus.map((m) => [m.messageId, m]));
  const problems: string[] = [];
  for (const m of corpus) {
    for (const r of m.recipients) {
      const copies = byRecipient.get(asDumped(r)) ?? [];
      if (copies.length !== 1) problems.push(`${r}: ${copies.length} copies`);
    }
  }
  for (const d of dumps) {
    const { received, rest } = stripReceived(d.message);
    const m: CorpusMessage | undefined = byMessageId.get(messageIdOf(rest) ?? '');
    if (!m) {
      problems.push(`${d.file}: unknown message ${messageIdOf(rest)}`);
      continue;
    }
    const domain = domainOf(d.rcpts[0]!.address);
    const expected = m.recipients.filter((r) => domainOf(r) === domain).map(asDumped).sort();
    if (JSON.stringify(d.rcpts.map((r) => r.address.toLowerCase()).sort()) !== JSON.stringify(expected)) {
      problems.push(`${d.file}: recipients ${JSON.stringify(d.rcpts)} for message ${m.index}, wanted ${JSON.stringify(expected)}`);
    }
    if (received.length !== 2 || !/by impulse\.test \(Impulse\)/.test(received[0]!) || !/by upstream\.test \(Postfix\)/.test(received[1]!)) {
      problems.push(`${d.file}: Received headers ${JSON.stringify(received)}`);
    }
    if (!rest.equals(asStored(m.raw))) {
      const got = rest.toString('utf8');
      const want = asStored(m.raw).toString('utf8');
      let at = 0;
      while (at < got.length && got[at] === want[at]) at++;
      problems.push(`${d.file}: message ${m.index} (${m.kind}) differs at char ${at}: got ${JSON.stringify(got.slice(at, at + 80))}, sent ${JSON.stringify(want.slice(at, at + 80))}`);
    }
  }
  assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problem(s)`);
  assert.equal(dumps.length, jobs, 'one transaction per message and domain at the sinks');

  // What Postfix relayed into Impulse and Impulse sent on, for the record (the taps saw every session).
  const tap = net.upstreamTap!;
  const utf8Mail = corpus.filter((m) => m.utf8).map((m) => m.from);
  for (const s of tap.sessions) {
    for (const line of tap.clientLines(s).map((b) => b.toString('utf8'))) {
      const from = /^MAIL FROM:<([^>]*)>(.*)$/i.exec(line);
      if (from && utf8Mail.includes(from[1]!)) assert.match(from[2]!, /\bSMTPUTF8\b/, `Postfix relayed ${line} without SMTPUTF8`);
    }
  }
  t.diagnostic(`Postfix -> Impulse: ${tap.sessions.length} sessions; parameters ${JSON.stringify(parameterSets(tap))}`);
  t.diagnostic(`Impulse -> smtp-sink: ${net.sinks.full!.tap.sessions.length} sessions to mx.a.test; parameters ${JSON.stringify(parameterSets(net.sinks.full!.tap))}`);
  t.diagnostic(`Postfix -> Impulse command batches: ${JSON.stringify(batchShapes(tap))}`);
  t.diagnostic(`Impulse -> smtp-sink command batches: ${JSON.stringify(batchShapes(net.sinks.full!.tap))}`);

  // Postfix's own `relayed` notices (NOTIFY=SUCCESS, while Impulse offers no DSN) reach the
  // sender through Impulse like any other mail.
  await net.daemon.waitForLogs((r) => r.event === 'delivery' && r.domain === 'sender.test', notices.length, 60_000);
  const toSender = net.sinks.sender!.dumps();
  assert.equal(toSender.length, notices.length);
  for (const d of toSender) {
    assert.equal(d.mailFrom, '', 'a notice comes from the null sender');
    assert.match(d.message.toString('utf8'), /^Action: relayed$/m);
  }
  const s = (ms: number) => (ms / 1000).toFixed(1);
  t.diagnostic(`${notices.length} relayed notices from Postfix; ${COUNT} messages, ${recipients} recipients: injected into Postfix in ${s(injected - started)} s, all delivered at +${s(delivered - started)} s`);
});
