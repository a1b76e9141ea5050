#!/usr/bin/env node
// The `impulse` command: run the daemon, check a config file, or ask a running daemon over its
// admin API. Exit codes are listed in the help.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { stringify } from 'yaml';
import { configJsonSchema } from '../config/json-schema.js';
import { explainOptions } from '../config/scopes.js';
import { loadDkimKeys } from '../dkim/keys.js';
import * as domain from './commands/domain.js';
import * as hashPassword from './commands/hash-password.js';
import * as mailq from './commands/mailq.js';
import * as message from './commands/message.js';
import * as queueActions from './commands/queue-actions.js';
import * as reload from './commands/reload.js';
import { loadOrExit } from './commands/shared.js';
import * as shaping from './commands/shaping.js';
import * as summary from './commands/summary.js';
import * as top from './commands/top.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

const EXIT_CODES = `
Exit codes:
  0  success
  1  the daemon reported a failure (HTTP 5xx, or 422 such as an invalid config on reload), or could not start
  2  usage error, or a configuration file that cannot be read or is invalid
  3  the daemon is unreachable (no socket, connection refused, no answer within --timeout)
  4  not found (unknown message, domain or binding)
  5  unauthorized (the token in admin.token_file is missing or wrong)`;

const program = new Command('impulse')
  .description('Impulse outbound SMTP delivery daemon')
  .version(pkg.version, '-V, --version')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .addHelpText('after', EXIT_CODES);

program.command('start')
  .description('run the daemon in the foreground (logs are JSON lines on stdout)')
  .requiredOption('-c, --config <file>', 'configuration file')
  .action(async (opts: { config: string }) => {
    const loaded = loadOrExit(opts.config);
    // Loaded here only: the admin commands need none of the daemon's modules and start faster without them.
    const { runDaemon } = await import('../main.js');
    try {
      await runDaemon(loaded);
      process.exit(0);
    } catch (err) {
      process.stderr.write(`impulse: ${(err as Error).message}\n`);
      process.exit(1);
    }
  });

program.command('check-config')
  .description('validate a configuration file (DKIM keys loaded too) and print the effective configuration, defaults filled in; '
    + 'with --domain, the delivery options in force for one (binding, domain) pair and the scope each comes from')
  .requiredOption('-c, --config <file>', 'configuration file')
  .option('-d, --domain <domain>', 'destination domain to show effective delivery options for')
  .option('-b, --binding <name>', 'binding for --domain', 'default')
  .action((opts: { config: string; domain?: string; binding: string }) => {
    const { document, config } = loadOrExit(opts.config);
    const dkim = loadDkimKeys(config.dkim);
    for (const w of dkim.warnings) process.stderr.write(`impulse: warning: ${w}\n`);
    if (dkim.errors.length > 0) {
      process.stderr.write(`impulse: invalid configuration ${opts.config}:\n${dkim.errors.map((e) => `  ${e}`).join('\n')}\n`);
      process.exit(2);
    }
    if (!opts.domain) {
      process.stdout.write(stringify(document));
      return;
    }
    if (opts.binding !== 'default' && !config.bindings.some((b) => b.name === opts.binding)) {
      process.stderr.write(`impulse: unknown binding "${opts.binding}"\n`);
      process.exit(2);
    }
    const rows = Object.entries(explainOptions(document, opts.binding, opts.domain.toLowerCase()))
      .map(([k, r]) => [k, r.value === undefined ? { value: 'unset', scope: 'no limit' } : r] as const);
    const width = Math.max(...rows.map(([k]) => k.length));
    const shown = (v: unknown) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));
    const valueWidth = Math.max(...rows.map(([, r]) => shown(r.value).length));
    process.stdout.write(`# effective delivery options for binding ${opts.binding}, domain ${opts.domain.toLowerCase()}\n`);
    for (const [key, r] of rows) process.stdout.write(`${key.padEnd(width)}  ${shown(r.value).padEnd(valueWidth)}  (${r.scope})\n`);
  });

program.command('config-schema')
  .description('print the JSON Schema of the configuration file (config/impulse.schema.json), for editors that complete and check YAML')
  .action(() => {
    process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
  });

for (const commands of [summary, top, mailq, domain, queueActions, message, shaping, reload, hashPassword]) commands.register(program);

await program.parseAsync(process.argv);
