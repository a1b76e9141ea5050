// `impulse flush|fail|suspend|resume`: acting on a domain's (or binding's) queue.
import type { Command } from 'commander';
import type { SuspendResult } from '../../admin/protocol.js';
import { plural } from '../format.js';
import { type AdminOptions, adminCommand, run } from './shared.js';

export interface FailOptions extends AdminOptions {
  quiet?: boolean;
  note?: string;
}

export function failBody(opts: FailOptions): { quiet: boolean; note?: string } {
  return { quiet: opts.quiet === true, ...(opts.note !== undefined ? { note: opts.note } : {}) };
}

export function withFailOptions(cmd: Command): Command {
  return cmd
    .option('-q, --quiet', 'fail without sending bounces (DSNs) to the senders')
    .option('--note <text>', 'a note recorded with the failure');
}

function renderSuspend(r: SuspendResult): string {
  const what = r.domain !== undefined ? `domain ${r.domain}` : `binding ${r.binding}`;
  return `${r.suspended ? 'suspended' : 'resumed'} ${what}\n`;
}

function registerSuspend(program: Command, name: 'suspend' | 'resume', description: string): void {
  adminCommand(program, `${name} [domain]`, description)
    .option('-b, --binding <name>', 'a binding instead of a domain')
    .action(function (this: Command, domain: string | undefined, opts: AdminOptions & { binding?: string }) {
      if ((domain === undefined) === (opts.binding === undefined)) this.error(`error: ${name} takes a domain or --binding, exactly one of them`, { exitCode: 2 });
      const body = domain !== undefined ? { domain: domain.toLowerCase() } : { binding: opts.binding! };
      return run(opts, (c) => c.call(name, { body }), renderSuspend);
    });
}

export function register(program: Command): void {
  adminCommand(program, 'flush <domain>', 'attempt delayed mail of a domain now ("all": of every domain)')
    .action((domain: string, opts: AdminOptions) => run(
      opts,
      (c) => c.call('flush', { body: domain === 'all' ? {} : { domain: domain.toLowerCase() } }),
      (r) => `flushed ${plural(r.flushed, 'message')}\n`,
    ));
  withFailOptions(adminCommand(program, 'fail <domain>', 'fail all mail queued for a domain, as permanent failures'))
    .action((domain: string, opts: FailOptions) => run(
      opts,
      (c) => c.call('fail', { body: { domain: domain.toLowerCase(), ...failBody(opts) } }),
      (r) => `failed ${plural(r.failed, 'message')}\n`,
    ));
  registerSuspend(program, 'suspend', 'stop delivering to a domain, or through a binding, until resumed; mail stays queued');
  registerSuspend(program, 'resume', 'deliver again to a suspended domain, or through a suspended binding');
}
