// The sd_notify protocol (sd_notify(3)) for a `Type=notify` unit, without a native addon: Node
// cannot send on AF_UNIX datagram sockets, so each message is handed to the systemd-notify
// binary.
//
// systemd-notify runs as the daemon's user, which may not forge the sender pid on the socket, so
// the message arrives from systemd-notify's own pid. systemd accepts it only under
// NotifyAccess=all and only if that process still exists when PID 1 reads the message; that is
// why --no-block is never passed: without it systemd-notify (systemd >= 246) follows up with a
// BARRIER=1 message and stays alive until the manager has processed everything before it.
// --pid names the daemon as the main pid, so the unit tracks node and not the short-lived sender.
import { type ChildProcess, execFile } from 'node:child_process';
import type { Logger } from 'pino';

const DEFAULT_BINARY = '/usr/bin/systemd-notify';
/**
 * systemd-notify gives up on the barrier after 5 s by itself; this bound only guards against a
 * sender that hangs for another reason, so that no call can hold up start or shutdown for long.
 */
const SEND_TIMEOUT_MS = 10_000;

interface SystemdNotifierOptions {
  /** Where NOTIFY_SOCKET is read from and the environment systemd-notify runs with. */
  env?: NodeJS.ProcessEnv;
  log: Logger;
  binary?: string;
}

export class SystemdNotifier {
  /** True when started by systemd with a notify socket; every call is a no-op otherwise. */
  readonly enabled: boolean;
  private readonly env: NodeJS.ProcessEnv;
  private readonly log: Logger;
  private readonly binary: string;
  /**
   * Messages go out one at a time, in call order: two senders racing could otherwise let an
   * early READY=1 overtake STOPPING=1, or RELOADING=1 overtake the READY=1 ending the reload.
   */
  private tail: Promise<void> = Promise.resolve();

  constructor(opts: SystemdNotifierOptions) {
    this.env = opts.env ?? process.env;
    this.log = opts.log;
    this.binary = opts.binary ?? DEFAULT_BINARY;
    this.enabled = Boolean(this.env.NOTIFY_SOCKET);
  }

  /** Start-up complete, or a reload finished (whether the new configuration was taken or not). */
  ready(status?: string): Promise<void> {
    return this.send(status === undefined ? ['READY=1'] : ['READY=1', statusField(status)]);
  }

  /**
   * A reload began; must be followed by ready() when it ends, or the unit stays "reloading".
   * MONOTONIC_USEC is what systemd >= 253 requires to match RELOADING=1 to its own reload request
   * under Type=notify-reload; systemd 252 ignores it. process.hrtime reads CLOCK_MONOTONIC on
   * Linux, the clock systemd compares it with.
   */
  reloading(): Promise<void> {
    return this.send(['RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`]);
  }

  /** Shutdown began: systemd shows "deactivating" rather than treating the drain as a hang. */
  stopping(): Promise<void> {
    return this.send(['STOPPING=1']);
  }

  /** Free-form text shown by `systemctl status`. */
  status(text: string): Promise<void> {
    return this.send([statusField(text)]);
  }

  private send(fields: string[]): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    const next = this.tail.then(() => this.run(fields));
    this.tail = next;
    return next;
  }

  private run(fields: string[]): Promise<void> {
    return new Promise<void>((resolve) => {
      let child: ChildProcess | undefined;
      // A daemon exiting mid-send (a second SIGTERM) must not leave the sender waiting on its
      // barrier after us; 'exit' allows only synchronous work, hence SIGKILL.
      const killChild = () => child?.kill('SIGKILL');
      process.once('exit', killChild);
      child = execFile(
        this.binary,
        [`--pid=${process.pid}`, ...fields],
        { env: this.env, timeout: SEND_TIMEOUT_MS, killSignal: 'SIGKILL', encoding: 'utf8' },
        (err, _stdout, stderr) => {
          process.removeListener('exit', killChild);
          if (err) {
            const e = err as NodeJS.ErrnoException & { killed?: boolean };
            const reason = e.code === 'ENOENT'
              ? `${this.binary} not found`
              : e.killed
                ? `${this.binary} did not finish within ${SEND_TIMEOUT_MS} ms`
                : `${this.binary} failed: ${stderr.trim() || e.message}`;
            this.log.warn(
              { event: 'systemd_notify_failed', fields, notify_socket: this.env.NOTIFY_SOCKET, reason },
              `systemd notification not delivered: ${reason}`,
            );
          }
          resolve();
        },
      );
    });
  }
}

/** A newline would end STATUS= and start another field, so the text is kept to one line. */
function statusField(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, ' ')}`;
}
