// SMTP AUTH (PLAIN, LOGIN) for clients outside relay_from. smtp-server refuses AUTH with 538
// until STARTTLS is up, so a password is never checked over a clear connection. Each result is
// logged with the client address and user, never the password.
import type { Logger } from 'pino';
import type { SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerSession } from 'smtp-server';
import { smtpError } from './reply.js';
import type { UsersFile } from './users-file.js';

type AuthCallback = (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void;

export class SmtpAuth {
  private readonly failures = new WeakMap<SMTPServerSession, number>();

  constructor(
    private readonly users: UsersFile,
    /** Failed attempts in one session after which it is closed. */
    private readonly maxFailures: number,
    private readonly log: Logger,
    private readonly listener: string,
  ) {}

  /** Rereads the users file; a file that cannot be read or parsed leaves the users as they were. */
  reload(): void {
    try {
      this.users.reload();
      this.log.info({ event: 'users_file_reloaded', listener: this.listener, file: this.users.path, users: this.users.size }, 'SMTP AUTH users reread');
    } catch (err) {
      this.log.error({ event: 'users_file_invalid', listener: this.listener, file: this.users.path, err: (err as Error).message },
        'users file not reloaded; the users read before stay in force');
    }
  }

  onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: AuthCallback): void {
    const user = auth.username ?? '';
    const who = { client: session.remoteAddress, user, method: auth.method, listener: this.listener };
    this.users.check(user, auth.password ?? '').then((ok) => {
      if (ok) {
        this.log.info({ event: 'auth', ...who }, 'client authenticated');
        return cb(null, { user });
      }
      const failures = (this.failures.get(session) ?? 0) + 1;
      this.failures.set(session, failures);
      this.log.warn({ event: 'auth_failed', ...who, failures }, 'authentication failed');
      if (failures >= this.maxFailures) {
        return cb(smtpError(421, `4.7.0 Too many failed authentication attempts (${failures}), closing connection`));
      }
      cb(null, { responseCode: 535, message: '5.7.8 Authentication credentials invalid' });
    }, (err: Error) => {
      this.log.error({ event: 'auth_error', ...who, err: err.message }, 'authentication could not be checked');
      cb(smtpError(454, '4.7.0 Temporary authentication failure, try again later'));
    });
  }
}
