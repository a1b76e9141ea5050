// An upstream Postfix of the test's own (never the system one): its config directory, queue and log under a temp dir, relaying everything to Impulse.
//
// `postconf -c DIR` and `postfix -c DIR start|stop` act on this instance only. Its smtpd listens
// on a loopback port of its own (master.cf); relayhost is `[host]:port` (brackets: no MX
// lookup) and DNS is off altogether. Retries come every second. Logging goes to a file through
// postlogd (maillog_file, with the postlog service in master.cf), which waitForLog follows with
// fs.watch.
import { execFileSync } from 'node:child_process';
import { type FSWatcher, chmodSync, chownSync, closeSync, fstatSync, mkdirSync, openSync, readSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../helpers/ports.js';
import { Condition } from '../helpers/wait.js';

const POSTFIX = '/usr/sbin/postfix';
const POSTQUEUE = '/usr/sbin/postqueue';

export type PostfixOptions = {
  /** A directory of the test's; the instance lives in DIR/postfix. */
  dir: string;
  relayhost: { host: string; port: number };
  /** Extra or overriding main.cf parameters. */
  main?: Record<string, string>;
};

export type QueueEntry = {
  queue_name: string;
  queue_id: string;
  sender: string;
  recipients: Array<{ address: string; delay_reason?: string }>;
};

export type Postfix = {
  configDir: string;
  /** smtpd's port on 127.0.0.1. */
  port: number;
  maillog: string;
  /** Every log line so far. */
  readonly lines: string[];
  /** Resolves with the first `count` lines matching pred, as they arrive in the maillog. */
  waitForLines(pred: (line: string) => boolean, count: number, timeoutMs?: number): Promise<string[]>;
  /**
   * Resolves once every queue file Postfix logged (notices it made included) has been removed,
   * with the ids; check queue() for the queue itself.
   */
  drained(timeoutMs?: number): Promise<string[]>;
  /** The queue as `postqueue -j` lists it. */
  queue(): QueueEntry[];
  postconf(name: string): string;
  stop(): Promise<void>;
};

/** The ids of Postfix instances running, for an abort if the test process dies first. */
const running = new Set<string>();
let exitHandler = false;

function abortAll(): void {
  for (const configDir of running) {
    try {
      execFileSync(POSTFIX, ['-c', configDir, 'abort'], { stdio: 'ignore' });
    } catch {
      // already stopped
    }
  }
  running.clear();
}

function installExitHandler(): void {
  if (exitHandler) return;
  exitHandler = true;
  process.on('exit', abortAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, abortAll);
}

function mainCf(root: string, opts: PostfixOptions): string {
  const params: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: join(root, 'queue'),
    data_directory: join(root, 'data'),
    myhostname: 'upstream.test',
    mydomain: 'upstream.test',
    myorigin: '$myhostname',
    mydestination: '',
    relay_domains: '',
    local_recipient_maps: '',
    alias_maps: '',
    alias_database: '',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    mynetworks: '127.0.0.0/8',
    smtpd_relay_restrictions: 'permit_mynetworks, reject',
    // Headers stay as the client wrote them: no address rewriting, no headers added for 127.0.0.1.
    local_header_rewrite_clients: '',
    smtpd_peername_lookup: 'no',
    relayhost: `[${opts.relayhost.host}]:${opts.relayhost.port}`,
    smtp_dns_support_level: 'disabled',
    smtp_host_lookup: 'native',
    smtputf8_enable: 'yes',
    queue_run_delay: '1s',
    minimal_backoff_time: '1s',
    maximal_backoff_time: '2s',
    in_flow_delay: '0',
    maillog_file: join(root, 'maillog'),
    maillog_file_prefixes: root,
    biff: 'no',
    ...opts.main,
  };
  return Object.entries(params).map(([k, v]) => `${k} = ${v}\n`).join('');
}

function masterCf(port: number): string {
  // service type private unpriv chroot wakeup maxproc command: no chroot, so nothing needs
  // copying into the queue directory.
  return `127.0.0.1:${port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
`;
}

/** Follows a growing file from its start, complete lines only (a line may be cut between writes). */
function follow(path: string, onLine: (line: string) => void): FSWatcher {
  let offset = 0;
  let partial = Buffer.alloc(0);
  const read = () => {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size <= offset) return;
      const chunk = Buffer.alloc(size - offset);
      readSync(fd, chunk, 0, chunk.length, offset);
      offset = size;
      partial = Buffer.concat([partial, chunk]);
    } finally {
      closeSync(fd);
    }
    let eol: number;
    while ((eol = partial.indexOf(0x0a)) >= 0) {
      onLine(partial.subarray(0, eol).toString('utf8'));
      partial = partial.subarray(eol + 1);
    }
  };
  const watcher = watch(path, read);
  read();
  return watcher;
}

export async function startPostfix(opts: PostfixOptions): Promise<Postfix> {
  const root = join(opts.dir, 'postfix');
  const configDir = join(root, 'etc');
  for (const d of ['etc', 'queue', 'data']) mkdirSync(join(root, d), { recursive: true });
  // Postfix's daemons run as user postfix: every directory above the queue must let it through,
  // and data_directory must be its own.
  for (const d of [opts.dir, root]) chmodSync(d, 0o755);
  chownSync(join(root, 'data'), Number(execFileSync('id', ['-u', 'postfix'], { encoding: 'utf8' }).trim()), -1);
  const port = await freePort('127.0.0.1');
  writeFileSync(join(configDir, 'main.cf'), mainCf(root, opts));
  writeFileSync(join(configDir, 'master.cf'), masterCf(port));
  const maillog = join(root, 'maillog');
  writeFileSync(maillog, '');

  const changed = new Condition();
  const lines: string[] = [];
  const watcher = follow(maillog, (line) => {
    lines.push(line);
    changed.notify();
  });
  const tail = () => lines.slice(-30).join('\n');
  installExitHandler();
  try {
    // `start` checks and creates the queue directories, and returns once master is up.
    execFileSync(POSTFIX, ['-c', configDir, 'start'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    watcher.close();
    throw new Error(`postfix -c ${configDir} start failed: ${(err as Error).message}\n${tail()}`);
  }
  running.add(configDir);

  return {
    configDir,
    port,
    maillog,
    lines,
    waitForLines(pred, count, timeoutMs = 30000) {
      return changed.until(
        () => {
          const found = lines.filter(pred);
          return found.length >= count ? found.slice(0, count) : undefined;
        },
        timeoutMs,
        () => `${lines.filter(pred).length} matching Postfix log line(s), wanted ${count}; last lines:\n${tail()}`,
      );
    },
    drained(timeoutMs = 60000) {
      const pending = () => {
        const made = new Set<string>();
        const removed = new Set<string>();
        for (const l of lines) {
          const m = /postfix\/(cleanup|qmgr)\[\d+\]: ([0-9A-F]+): (message-id=|removed)/.exec(l);
          if (m) (m[3] === 'removed' ? removed : made).add(m[2]!);
        }
        return { made, left: [...made].filter((id) => !removed.has(id)) };
      };
      return changed.until(() => {
        const { made, left } = pending();
        return left.length === 0 ? [...made] : undefined;
      }, timeoutMs, () => `Postfix queue files not removed: ${pending().left.join(' ')}; last lines:\n${tail()}`);
    },
    queue() {
      const out = execFileSync(POSTQUEUE, ['-c', configDir, '-j'], { encoding: 'utf8' });
      return out.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as QueueEntry);
    },
    postconf(name) {
      return execFileSync('/usr/sbin/postconf', ['-c', configDir, '-h', name], { encoding: 'utf8' }).trim();
    },
    async stop() {
      watcher.close();
      if (!running.delete(configDir)) return;
      execFileSync(POSTFIX, ['-c', configDir, 'stop'], { stdio: 'ignore' });
    },
  };
}
