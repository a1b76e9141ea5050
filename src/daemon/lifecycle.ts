// A running daemon's life under signals: SIGHUP reloads; SIGTERM or SIGINT stops it within
// shutdown_timeout (sessions still in flight are abandoned then), a second signal at once.
import type { Logger } from 'pino';
import type { SystemdNotifier } from '../observability/systemd-notify.js';

/** Time past shutdown_timeout after which the daemon exits whatever is still closing. */
const HARD_STOP_GRACE_MS = 5_000;
/** After a second stop signal: time to close Redis cleanly before exiting anyway. */
const IMMEDIATE_STOP_GRACE_MS = 2_000;

interface Supervised {
  reload(): Promise<unknown>;
  /** Stops intake, parks held mail, waits for sessions in flight, closes Redis. */
  stop(): Promise<void>;
  /** Makes a stop in progress stop waiting for sessions in flight (retried after restart). */
  abandonSessions(): Promise<void>;
}

/** Resolves once the daemon has stopped, or was given up on after a stop signal. */
export function superviseSignals(daemon: Supervised, opts: { log: Logger; notifier: SystemdNotifier; shutdownTimeout: number }): Promise<void> {
  const { log, notifier, shutdownTimeout } = opts;
  process.on('SIGHUP', () => {
    log.info({ event: 'reloading', signal: 'SIGHUP' }, 'reloading the configuration');
    void daemon.reload();
  });
  return new Promise<void>((resolve) => {
    let stopping = false;
    let hardDeadline: NodeJS.Timeout | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // Held mail is parked as the stop began; sessions in flight are abandoned and their
        // messages come back after job_lock_timeout. Nothing acknowledged is lost.
        log.warn({ event: 'stopping_now', signal }, 'second signal: abandoning sessions in flight');
        void daemon.abandonSessions();
        clearTimeout(hardDeadline);
        hardDeadline = setTimeout(() => {
          log.error({ event: 'shutdown_forced', signal }, 'exiting without waiting further');
          resolve();
        }, IMMEDIATE_STOP_GRACE_MS);
        return;
      }
      stopping = true;
      void notifier.stopping();
      log.info({ event: 'stopping', signal }, 'stopping: no new mail accepted, finishing sessions in flight');
      const deadline = setTimeout(() => {
        log.warn({ event: 'shutdown_timeout', after_ms: shutdownTimeout }, 'sessions still in flight; they will be retried after restart');
        void daemon.abandonSessions();
      }, shutdownTimeout);
      // Past this, something (an unreachable Redis) holds the close: every queued message is
      // already in Redis and jobs in flight are retried after restart, so exiting loses nothing.
      hardDeadline = setTimeout(() => {
        log.error({ event: 'shutdown_forced', after_ms: shutdownTimeout + HARD_STOP_GRACE_MS }, 'shutdown did not complete; exiting');
        resolve();
      }, shutdownTimeout + HARD_STOP_GRACE_MS);
      daemon.stop().then(() => {
        clearTimeout(deadline);
        clearTimeout(hardDeadline);
        log.info({ event: 'stopped' }, 'impulse stopped');
        resolve();
      }, (err: Error) => {
        log.error({ event: 'stop_error', err: err.message }, 'error while stopping');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
