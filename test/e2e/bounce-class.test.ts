// Bounce classes end to end: sinks answer with the texts Gmail, Exchange Online and Yahoo really
// send, and the log records, the metrics scrape, `impulse message show` and the outcome hooks
// carry the class of each; an operator rule comes before the shipped ones, and a reload replaces it.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { type Daemon, type LogRecord, runCli } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';
import type { SinkBehaviour, SinkReply } from '../helpers/sink.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { type World, buildWorld, mxZone, queueIdOf } from './world.js';

const RECORDING_PLUGIN = fileURLToPath(new URL('../fixtures/recording-plugin.js', import.meta.url));

/** What each receiver answers at RCPT, by recipient. */
const AT_RCPT: Record<string, SinkReply> = {
  'nosuch@gmail.test': { code: 550, message: '5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient\'s email address for typos or unnecessary spaces. - gsmtp' },
  'full@gmail.test': { code: 452, message: '4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp' },
  'ghost@outlook.test': { code: 550, message: '5.4.1 Recipient address rejected: Access denied. AS(201806281) [AM4PEPF00027A6C.eurprd04.prod.outlook.com]' },
  'banned@outlook.test': { code: 550, message: '5.7.606 Access denied, banned sending IP [127.0.0.1]. To request removal from this list please visit https://sender.office.com/ and follow the directions.' },
  'filtered@outlook.test': { code: 550, message: '5.7.1 Message rejected by filter-7' },
  'first@yahoo.test': { code: 421, message: '4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://senders.yahooinc.com/error-codes' },
};

const receiver: SinkBehaviour = (ctx) => {
  if (ctx.stage === 'rcpt') return AT_RCPT[ctx.address!];
  if (ctx.stage === 'data' && ctx.message!.rcptTo.includes('spammy@gmail.test')) {
    return { code: 550, message: '5.7.1 [127.0.0.1] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. - gsmtp' };
  }
  return undefined;
};

let world: World;
let daemon: Daemon;
let metricsPort: number;

before(async () => {
  world = await buildWorld({
    zone: {
      ...mxZone({ 'gmail.test': '127.0.0.90', 'outlook.test': '127.0.0.91', 'yahoo.test': '127.0.0.92', 'sender.test': '127.0.0.93' }),
      'nullmx.test': { mx: [{ preference: 0, exchange: '.' }] },
    },
    sinks: {
      gmail: { host: '127.0.0.90', behaviour: receiver },
      outlook: { host: '127.0.0.91', behaviour: receiver },
      yahoo: { host: '127.0.0.92', behaviour: receiver },
      sender: { host: '127.0.0.93' },
    },
    // A deferral stays one: its retry is an hour away.
    config: { retry_interval: '1h', max_retry_interval: '2h' },
  });
  metricsPort = await freePort();
  daemon = await world.start({
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    plugins: [{ path: RECORDING_PLUGIN }],
    bounce_class_rules: [{ match: 'filter-7', class: 52 }],
  });
});

after(async () => {
  await world.close();
});

async function inject(to: string[]): Promise<string> {
  const from = 's@sender.test';
  const r = await sendMail({ host: '127.0.0.1', port: world.intakePort, from, to, raw: makeMessage({ from, to }) });
  return queueIdOf(r.response);
}

function outcomeOf(event: 'delivery' | 'transient_failure' | 'permanent_failure', qid: string, recipient: string): Promise<LogRecord> {
  return daemon.waitForLog((r) => r.event === event && r.qid === qid && r.recipients.includes(recipient));
}

test('each deferral and failure is logged, counted and shown with the bounce class of its reply, and the outcome hooks get it', async () => {
  const mixed = await inject(['ok@gmail.test', 'nosuch@gmail.test', 'full@gmail.test']);
  const spammy = await inject(['spammy@gmail.test']);
  const ghost = await inject(['ghost@outlook.test']);
  const banned = await inject(['banned@outlook.test']);
  const yahoo = await inject(['first@yahoo.test']);
  const nullMx = await inject(['anyone@nullmx.test']);

  const expected: Array<[string, 'transient_failure' | 'permanent_failure', string, number]> = [
    [mixed, 'permanent_failure', 'nosuch@gmail.test', 10],
    [mixed, 'transient_failure', 'full@gmail.test', 22],
    [spammy, 'permanent_failure', 'spammy@gmail.test', 52],
    [ghost, 'permanent_failure', 'ghost@outlook.test', 10],
    [banned, 'permanent_failure', 'banned@outlook.test', 51],
    [yahoo, 'transient_failure', 'first@yahoo.test', 51],
    [nullMx, 'permanent_failure', 'anyone@nullmx.test', 21],
  ];
  for (const [qid, event, recipient, bounceClass] of expected) {
    const record = await outcomeOf(event, qid, recipient);
    assert.equal(record.bounce_class, bounceClass, `${event} of ${recipient}: ${record.reply}`);
    const hook = event === 'transient_failure' ? 'log_transient_failure' : 'log_permanent_failure';
    const call = await daemon.waitForLog((r) => r.event === 'hook_call' && r.hook === hook && r.args[0].qid === qid && r.args[0].recipients.includes(recipient));
    assert.equal(call.args[3], record.reply, 'the hook gets the reply as note');
    assert.equal(call.args[4], bounceClass, `${hook} of ${recipient} gets the bounce class last`);
  }
  const delivered = await outcomeOf('delivery', mixed, 'ok@gmail.test');
  assert.equal(delivered.bounce_class, undefined, 'a delivery has no bounce class');

  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const value = (series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    assert.ok(line, `no ${series} in the scrape`);
    return Number(line.slice(series.length + 1));
  };
  assert.equal(value('impulse_messages_failed_total{binding="default",status="5.1.1",bounce_class="10"}'), 1);
  assert.equal(value('impulse_messages_failed_total{binding="default",status="5.4.1",bounce_class="10"}'), 1);
  assert.equal(value('impulse_messages_failed_total{binding="default",status="5.7.1",bounce_class="52"}'), 1);
  assert.equal(value('impulse_messages_failed_total{binding="default",status="5.7.606",bounce_class="51"}'), 1);
  assert.equal(value('impulse_messages_failed_total{binding="default",status="5.1.10",bounce_class="21"}'), 1);
  assert.equal(value('impulse_messages_deferred_total{binding="default",status="4.2.2",bounce_class="22"}'), 1);
  // Yahoo closes the session with its 421: the session reports it lost (4.4.2), quoting the reply that gives the class.
  assert.equal(value('impulse_messages_deferred_total{binding="default",status="4.4.2",bounce_class="51"}'), 1);

  const shown = await runCli(['message', 'show', mixed, '--json', '-c', daemon.configPath]);
  assert.equal(shown.code, 0, shown.stderr);
  const attempts = (JSON.parse(shown.stdout) as { jobs: Array<{ attempts: Array<{ outcome: string; bounce_class?: number; recipients?: string[] }> }> }).jobs[0]!.attempts;
  assert.deepEqual(attempts.map((a) => [a.outcome, a.bounce_class, a.recipients]), [
    ['delivered', undefined, ['ok@gmail.test']],
    ['deferred', 22, ['full@gmail.test']],
    ['failed', 10, ['nosuch@gmail.test']],
  ]);
  const human = await runCli(['message', 'show', mixed, '-c', daemon.configPath]);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /BOUNCE-CLASS/);
  assert.match(human.stdout, /deferred .* 22 mailbox full +full@gmail\.test: 452 4\.2\.2 /);
  assert.match(human.stdout, /failed .* 10 invalid recipient +nosuch@gmail\.test: 550 5\.1\.1 /);
});

test('an operator rule comes before the shipped rules, and a reload applies changed rules', async () => {
  const before = await inject(['filtered@outlook.test']);
  assert.equal((await outcomeOf('permanent_failure', before, 'filtered@outlook.test')).bounce_class, 52, 'the rule, not 5.7.1 (mail block, 50)');

  const doc = parse(readFileSync(daemon.configPath, 'utf8')) as Record<string, unknown>;
  doc['bounce_class_rules'] = [{ match: 'rejected by filter-\\d', class: 53 }];
  writeFileSync(daemon.configPath, stringify(doc));
  const reloaded = await runCli(['reload', '-c', daemon.configPath]);
  assert.equal(reloaded.code, 0, reloaded.stderr);
  await daemon.waitForLog((r) => r.event === 'reloaded');

  const afterReload = await inject(['filtered@outlook.test']);
  assert.equal((await outcomeOf('permanent_failure', afterReload, 'filtered@outlook.test')).bounce_class, 53);
});
