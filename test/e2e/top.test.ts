// `impulse top` against a running daemon, as an operator sees it: one plain table with --once,
// and the live view driven in a pseudo-terminal (util-linux `script`): it draws the pairs, a key
// re-sorts them, `q` quits with the terminal given back.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { CLI_PATH, type Daemon, runCli } from '../helpers/daemon.js';
import { killOnExit } from '../helpers/cleanup.js';
import { makeMessage, sendMail } from '../helpers/smtp-client.js';
import { Condition } from '../helpers/wait.js';
import { type World, buildWorld, mxZone } from './world.js';

let world: World;
let daemon: Daemon;
let release: () => void = () => {};
const held = new Promise<void>((resolve) => {
  release = resolve;
});

before(async () => {
  world = await buildWorld({
    zone: mxZone({ 'ok.test': '127.0.0.175', 'defer.test': '127.0.0.176', 'slow.test': '127.0.0.177' }),
    sinks: {
      ok: { host: '127.0.0.175' },
      defer: { host: '127.0.0.176', behaviour: (ctx) => (ctx.stage === 'rcpt' ? { code: 451, message: '4.7.1 try later' } : undefined) },
      slow: { host: '127.0.0.177', behaviour: async (ctx) => {
        if (ctx.stage === 'data') await held;
        return undefined;
      } },
    },
    config: { retry_interval: '1h', max_retry_interval: '1h' },
  });
  daemon = await world.start();
  const send = (to: string) => sendMail({ host: '127.0.0.1', port: world.intakePort, from: 's@sender.test', to: [to], raw: makeMessage({ from: 's@sender.test', to: [to] }) });
  for (let i = 0; i < 6; i++) await send(`o${i}@ok.test`);
  for (let i = 0; i < 3; i++) await send(`d${i}@defer.test`);
  await send('s0@slow.test');
  await world.sinks.ok!.waitForMessages(6);
  await daemon.waitForLogs((r) => r.event === 'transient_failure' && r.domain === 'defer.test', 3);
});

after(async () => {
  release();
  await world.close();
});

/** The data rows of a view, by domain: the columns after the domain's. */
function rows(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const cells = line.trim().split(/\s+/);
    if (cells[0]?.endsWith('.test')) out.set(cells[0], cells.slice(1));
  }
  return out;
}

test('impulse top --once prints one table: rates of the last minute, held mail, connections, per pair', async () => {
  const r = await runCli(['top', '--once', '-c', daemon.configPath]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^impulse top: node \S+, \d\d:\d\d:\d\d, 3 pairs, sorted by active$/m);
  const view = rows(r.stdout);
  // BINDING, DELIVERED/S, DEFERRED/S, FAILED/S, ACTIVE, DELAYED, CONN, OLDEST, SHAPING
  assert.deepEqual(view.get('ok.test')!.slice(0, 4), ['default', '0.10', '0.00', '0.00']);
  assert.deepEqual(view.get('defer.test')!.slice(0, 6), ['default', '0.00', '0.05', '0.00', '0', '3']);
  assert.deepEqual(view.get('slow.test')!.slice(4, 7), ['1', '0', '1'], 'one held, on its one connection in DATA');
  assert.equal([...view.keys()][0], 'slow.test', 'sorted by active');
});

test('the live view in a terminal: drawn, re-sorted by a key, and q quits, leaving the terminal as it was', async () => {
  const command = `stty rows 40 cols 160; exec "${process.execPath}" "${CLI_PATH}" top -c "${daemon.configPath}" --interval 0.3`;
  const proc = spawn('script', ['-qefc', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  killOnExit(proc);
  let screen = '';
  const changed = new Condition();
  proc.stdout.setEncoding('utf8').on('data', (c: string) => {
    screen += c;
    changed.notify();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => {
    changed.notify();
    resolve(code);
  }));
  /** The latest frame: what follows the last clear of the screen. */
  const frame = () => screen.slice(screen.lastIndexOf('\x1b[2J') + 4);
  // The terminal may hand a frame over in pieces: one counts once all three pairs' rows are in.
  const shows = (re: RegExp) => changed.until(() => {
    const f = frame();
    return re.test(f) && rows(f).size === 3 ? f : undefined;
  }, 10_000, () => JSON.stringify(frame()));

  const first = await shows(/sorted by active[\s\S]*slow\.test/);
  assert.ok(screen.startsWith('\x1b[?1049h\x1b[?25l') || screen.includes('\x1b[?1049h\x1b[?25l'), 'the alternate screen, cursor hidden');
  assert.equal([...rows(first).keys()][0], 'slow.test');
  proc.stdin.write('t');
  const byDeferred = await shows(/sorted by deferred/);
  assert.equal([...rows(byDeferred).keys()][0], 'defer.test');
  proc.stdin.write('v');
  assert.equal([...rows(await shows(/sorted by delivered/)).keys()][0], 'ok.test');
  proc.stdin.write('q');
  assert.equal(await exited, 0);
  assert.ok(screen.trimEnd().endsWith('\x1b[?25h\x1b[?1049l'), `cursor shown and screen restored at the end: ${JSON.stringify(screen.slice(-40))}`);
});
