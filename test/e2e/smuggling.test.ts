// SMTP smuggling: DATA that another MTA could end early on a non-standard terminator, with a
// second transaction hidden behind it. The intake refuses any DATA with a bare <CR> or <LF>, so
// neither the carrier nor the hidden message is ever delivered, and the session goes on.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Daemon } from '../helpers/daemon.js';
import { makeMessage } from '../helpers/smtp-client.js';
import { RawSmtp } from '../helpers/raw-smtp.js';
import { type World, buildWorld, mxZone, splitReceived } from './world.js';

let world: World;
let daemon: Daemon;

before(async () => {
  world = await buildWorld({ zone: mxZone({ 'victim.test': '127.0.0.2' }), sinks: { mx: { host: '127.0.0.2' } } });
  daemon = await world.start();
});

after(async () => {
  await world.close();
});

const VARIANTS: Array<[name: string, bytes: string, bare: 'CR' | 'LF']> = [
  ['<LF>.<LF>', '\n.\n', 'LF'],
  ['<LF>.<CR><LF>', '\n.\r\n', 'LF'],
  ['<CR><LF>.<LF>', '\r\n.\n', 'LF'],
  ['<CR>.<CR>', '\r.\r', 'CR'],
  ['<CR><LF>.<CR>', '\r\n.\r', 'CR'],
  ['<LF>.<CR>', '\n.\r', 'LF'],
  ['bare <LF> mid-line', '\n', 'LF'],
  ['bare <CR> mid-line', '\r', 'CR'],
];

/** Opens a transaction up to the 354, asserting each reply on the way. */
async function startData(c: RawSmtp, from: string, to: string): Promise<void> {
  assert.match(await c.command(`MAIL FROM:<${from}>`), /^250 /);
  assert.match(await c.command(`RCPT TO:<${to}>`), /^250 /);
  assert.match(await c.command('DATA'), /^354 /);
}

for (const [i, [name, variant, bare]] of VARIANTS.entries()) {
  test(`DATA smuggling a second message behind ${name} is refused with 550 5.5.2 and nothing of it is delivered`, async () => {
    const carrier = `carrier${i}@victim.test`;
    const smuggled = `smuggled${i}@victim.test`;
    const clean = `clean${i}@victim.test`;
    const c = await RawSmtp.connect({ host: '127.0.0.1', port: world.intakePort });
    try {
      assert.match(await c.command('EHLO client.test'), /^250/);
      await startData(c, 'user@sender.test', carrier);
      const head = makeMessage({ from: 'user@sender.test', to: [carrier], body: 'Quarterly report attached.' }).replace(/\r\n$/, '');
      const hidden = `MAIL FROM:<ceo@sender.test>\r\nRCPT TO:<${smuggled}>\r\nDATA\r\n`
        + `From: ceo@sender.test\r\nTo: ${smuggled}\r\nSubject: wire the money\r\n\r\nsmuggled\r\n`;
      c.write(`${head}${variant}${hidden}.\r\n`);
      const refusal = await c.reply();
      assert.match(refusal, /^550 5\.5\.2 .*bare <(CR|LF)>/);
      assert.ok(refusal.includes(`<${bare}>`), refusal);

      await startData(c, 'user@sender.test', clean);
      c.write(makeMessage({ from: 'user@sender.test', to: [clean] }) + '.\r\n');
      assert.match(await c.reply(), /^250 2\.0\.0 Ok queued as /);
      assert.match(await c.command('QUIT'), /^221 /);
      // Exactly one reply to the refused DATA: nothing hidden in it was taken as a command.
      assert.equal(c.replies.length, 11, JSON.stringify(c.replies));
    } finally {
      c.close();
    }

    const log = await daemon.waitForLog((r) => r.event === 'bare_newline_refused' && r.recipients?.includes(carrier));
    assert.equal(log.client, '127.0.0.1');
    assert.equal(log.bare, bare);
    // The clean message was accepted after the refused one on the same session; once it has
    // arrived, anything queued before it would have been handed over too.
    await world.sinks.mx!.waitForRecipients([clean]);
    const leaked = world.sinks.mx!.messages.filter((m) => m.rcptTo.some((r) => r === carrier || r === smuggled));
    assert.deepEqual(leaked, []);
    assert.equal(daemon.logs.filter((r) => r.event === 'reception' && r.recipients.some((x: string) => x === carrier || x === smuggled)).length, 0);
  });
}

test('a clean CRLF message with leading-dot lines is delivered byte for byte', async () => {
  const to = 'dots@victim.test';
  const message = makeMessage({ from: 'user@sender.test', to: [to], body: '.leading dot\r\n.\r\n..two dots\r\nend\r\n' });
  // Dot-stuffed on the wire (RFC 5321 4.5.2): every line starting with '.' gets one more.
  const stuffed = message.replace(/^\./gm, '..');
  const c = await RawSmtp.connect({ host: '127.0.0.1', port: world.intakePort });
  try {
    assert.match(await c.command('EHLO client.test'), /^250/);
    await startData(c, 'user@sender.test', to);
    c.write(`${stuffed}.\r\n`);
    assert.match(await c.reply(), /^250 2\.0\.0 Ok queued as /);
    assert.match(await c.command('QUIT'), /^221 /);
  } finally {
    c.close();
  }
  const [delivered] = await world.sinks.mx!.waitForRecipients([to]);
  assert.equal(splitReceived(delivered!.raw).rest.toString('latin1'), message);
});
