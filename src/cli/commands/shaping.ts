// `impulse shaping` and `impulse shaping clear`: the shaping actions in force, and ending them.
import type { Command } from 'commander';
import type { ShapingView } from '../../admin/protocol.js';
import { plural, table, when } from '../format.js';
import { type AdminOptions, adminCommand, run } from './shared.js';

/** The scope an action holds, as one word an operator can paste into `shaping clear`. */
export function scopeText(a: ShapingView): string {
  switch (a.scope) {
    case 'binding_domain': return `binding ${a.binding} :: domain ${a.domain}`;
    case 'domain': return `domain ${a.domain}`;
    case 'binding': return `binding ${a.binding}`;
    case 'site': return `binding ${a.binding} :: site ${a.mx_host}`;
  }
}

/** What the action does, in a line: `suspend`, or `set max_outbound_connections=1`. */
export function actionText(a: ShapingView): string {
  return a.action === 'set' ? `set ${Object.entries(a.options ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(' ')}` : a.action;
}

function renderList(actions: readonly ShapingView[], now: number): string {
  if (actions.length === 0) return 'no shaping action in force\n';
  return table(
    [{ title: 'RULE' }, { title: 'SCOPE' }, { title: 'ACTION' }, { title: 'UNTIL' }, { title: 'REPLY' }],
    actions.map((a) => [a.rule, scopeText(a), actionText(a), when(a.until, now), a.reply.replace(/\s+/g, ' ')]),
  );
}

interface ClearOptions extends AdminOptions {
  id?: string;
  rule?: string;
  domain?: string;
  binding?: string;
  site?: string;
}

export function register(program: Command): void {
  // Each subcommand takes the admin options itself, so `-c` after `clear` is clear's.
  const shaping = program.command('shaping').description('the shaping actions in force (list, the default) and ending them (clear)');
  adminCommand(shaping, 'list', 'list the shaping actions in force: rule, scope, action, end, and the reply that triggered it', { isDefault: true })
    .action((opts: AdminOptions) => run(opts, (c) => c.call('shaping'), (r) => renderList(r.actions, Date.now())));
  adminCommand(shaping, 'clear', 'end shaping actions now: those matching every option given (at least one)')
    .option('--id <id>', 'one action, by the id `impulse shaping --json` shows')
    .option('--rule <name>', 'the actions of a rule')
    .option('--domain <domain>', 'actions holding a domain')
    .option('--binding <name>', 'actions holding a binding')
    .option('--site <mx-host>', 'site actions of an MX host')
    .action(function (this: Command, opts: ClearOptions) {
      const body = { id: opts.id, rule: opts.rule, domain: opts.domain?.toLowerCase(), binding: opts.binding, site: opts.site };
      if (Object.values(body).every((v) => v === undefined)) this.error('error: shaping clear needs --id, --rule, --domain, --binding or --site', { exitCode: 2 });
      return run(opts, (c) => c.call('shapingClear', { body }), (r) => `ended ${plural(r.cleared.length, 'shaping action')}\n${r.cleared.length ? renderList(r.cleared, Date.now()) : ''}`);
    });
}
