// SystemdNotifier against a real receiving end: a notify socket bound by a small python3 program
// that reads datagrams with their passed file descriptors the way the service manager does, and
// closes those descriptors, which is how systemd answers systemd-notify's barrier.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { SystemdNotifier } from '../../src/observability/systemd-notify.js';
import { forgetDir, killOnExit, removeOnExit } from '../helpers/cleanup.js';
import { Condition } from '../helpers/wait.js';

const WAIT_MS = 10_000;

// One JSON line per datagram: its text, how many descriptors came with it, and the receiver's
// CLOCK_MONOTONIC at reception (to check MONOTONIC_USEC against).
const RECEIVER = `
import array, json, os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"listening": True}), flush=True)
fd_size = array.array("i").itemsize
while True:
    data, ancdata, _flags, _addr = s.recvmsg(65536, socket.CMSG_SPACE(16 * fd_size))
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fd_size])
    print(json.dumps({"text": data.decode(), "fds": len(fds), "monotonic_us": time.monotonic_ns() // 1000}), flush=True)
    for fd in fds:
        os.close(fd)
`;

interface Datagram {
  fields: Map<string, string>;
  fds: number;
  monotonicUs: bigint;
}

const datagrams: Datagram[] = [];
const received = new Condition();
let listening = false;
let dir: string;
let socketPath: string;
let receiver: ChildProcess;
let receiverExited: Promise<void>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'impulse-notify-'));
  removeOnExit(dir);
  socketPath = join(dir, 'notify.sock');
  receiver = spawn('python3', ['-c', RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  killOnExit(receiver);
  receiverExited = new Promise((resolve) => receiver.once('exit', () => resolve()));
  let gone: string | undefined;
  receiver.once('error', (err) => {
    gone = `python3 could not be started: ${err.message}`;
    received.notify();
  });
  receiver.once('exit', (code, signal) => {
    gone = `receiver exited (code ${code}, signal ${signal})`;
    received.notify();
  });
  createInterface({ input: receiver.stdout! }).on('line', (line) => {
    const parsed = JSON.parse(line) as { listening?: true; text?: string; fds?: number; monotonic_us?: number };
    if (parsed.listening) {
      listening = true;
    } else {
      const fields = new Map(parsed.text!.split('\n').filter(Boolean).map((f) => {
        const eq = f.indexOf('=');
        return [f.slice(0, eq), f.slice(eq + 1)] as [string, string];
      }));
      datagrams.push({ fields, fds: parsed.fds!, monotonicUs: BigInt(parsed.monotonic_us!) });
    }
    received.notify();
  });
  await received.until(() => {
    if (gone) throw new Error(gone);
    return listening || undefined;
  }, WAIT_MS, () => 'the receiver to bind its socket');
});

after(async () => {
  if (receiver.exitCode === null && receiver.signalCode === null) receiver.kill('SIGTERM');
  await receiverExited;
  rmSync(dir, { recursive: true, force: true });
  forgetDir(dir);
});

function capturingLogger() {
  const records: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, records };
}

function envWith(notifySocket: string | undefined): NodeJS.ProcessEnv {
  const env = { ...process.env };
  // The test runner itself may run under a unit with a notify socket of its own.
  delete env.NOTIFY_SOCKET;
  if (notifySocket !== undefined) env.NOTIFY_SOCKET = notifySocket;
  return env;
}

/** The first datagram from index `from` on that carries `field`. */
function nextWith(from: number, field: string): Promise<Datagram> {
  return received.until(
    () => datagrams.slice(from).find((d) => d.fields.has(field)),
    WAIT_MS,
    () => `a datagram with ${field}; received: ${JSON.stringify(datagrams.slice(from).map((d) => [...d.fields]))}`,
  );
}

test('ready() sends READY=1 with the status and our pid as MAINPID, and waits on the barrier', async () => {
  const { log, records } = capturingLogger();
  const notifier = new SystemdNotifier({ env: envWith(socketPath), log });
  assert.equal(notifier.enabled, true);
  const from = datagrams.length;
  await notifier.ready('x');
  const message = await nextWith(from, 'READY');
  assert.equal(message.fields.get('READY'), '1');
  assert.equal(message.fields.get('STATUS'), 'x');
  assert.equal(message.fields.get('MAINPID'), String(process.pid));
  // Without --no-block, systemd-notify sent a barrier with a descriptor for us to close; had it
  // not been answered in time, a warning would have been logged.
  const barrier = await nextWith(from, 'BARRIER');
  assert.equal(barrier.fds, 1);
  assert.deepEqual(records, []);
});

test('reloading() sends RELOADING=1 with a CLOCK_MONOTONIC timestamp', async () => {
  const { log, records } = capturingLogger();
  const notifier = new SystemdNotifier({ env: envWith(socketPath), log });
  const from = datagrams.length;
  await notifier.reloading();
  const message = await nextWith(from, 'RELOADING');
  assert.equal(message.fields.get('RELOADING'), '1');
  const sent = BigInt(message.fields.get('MONOTONIC_USEC')!);
  assert.ok(sent <= message.monotonicUs && sent > message.monotonicUs - 60_000_000n,
    `MONOTONIC_USEC ${sent} is not shortly before the receiver's CLOCK_MONOTONIC ${message.monotonicUs}`);
  assert.deepEqual(records, []);
});

test('stopping() and status() send STOPPING=1 and a one-line STATUS=, in call order', async () => {
  const { log, records } = capturingLogger();
  const notifier = new SystemdNotifier({ env: envWith(socketPath), log });
  const from = datagrams.length;
  await Promise.all([notifier.status('draining\n3 sessions'), notifier.stopping()]);
  const status = await nextWith(from, 'STATUS');
  assert.equal(status.fields.get('STATUS'), 'draining 3 sessions');
  const stopping = await nextWith(from, 'STOPPING');
  assert.equal(stopping.fields.get('STOPPING'), '1');
  assert.ok(datagrams.indexOf(status) < datagrams.indexOf(stopping), 'STATUS= was overtaken by STOPPING=1');
  assert.deepEqual(records, []);
});

test('without NOTIFY_SOCKET nothing is spawned and every call resolves', async () => {
  const marker = join(dir, 'spawned');
  const binary = join(dir, 'fake-systemd-notify');
  writeFileSync(binary, `#!/bin/sh\ntouch '${marker}'\n`);
  chmodSync(binary, 0o755);
  const { log, records } = capturingLogger();
  const notifier = new SystemdNotifier({ env: envWith(undefined), log, binary });
  assert.equal(notifier.enabled, false);
  await notifier.ready('x');
  await notifier.reloading();
  await notifier.status('y');
  await notifier.stopping();
  assert.equal(existsSync(marker), false);
  assert.deepEqual(records, []);
});

test('a notification that cannot be delivered resolves and logs a warning naming the failure', async () => {
  const { log, records } = capturingLogger();
  await new SystemdNotifier({ env: envWith(join(dir, 'nobody-listens.sock')), log }).ready();
  await new SystemdNotifier({ env: envWith(socketPath), log, binary: join(dir, 'no-such-binary') }).ready();
  assert.equal(records.length, 2);
  assert.ok(records.every((r) => r.level === 40 && r.event === 'systemd_notify_failed'));
  assert.match(String(records[0]!.reason), /systemd-notify failed: .*No such file or directory/);
  assert.match(String(records[1]!.reason), /no-such-binary not found/);
});
