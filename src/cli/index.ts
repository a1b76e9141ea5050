#!/usr/bin/env node
// The `impulse` command: run the daemon, or check a config file. Exit codes: 0 ok, 1 runtime
// failure, 2 bad configuration or usage.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { stringify } from 'yaml';
import { type LoadResult, loadConfig } from '../config/load.js';
import { explainOptions } from '../config/scopes.js';
import { runDaemon } from '../main.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

function loadOrExit(path: string): Extract<LoadResult, { ok: true }> {
  const result = loadConfig(path);
  if (!result.ok) {
    process.stderr.write(`impulse: invalid configuration ${path}:\n${result.errors.map((e) => `  ${e}`).join('\n')}\n`);
    process.exit(2);
  }
  return result;
}

const program = new Command('impulse')
  .description('Impulse outbound SMTP delivery daemon')
  .version(pkg.version, '-V, --version')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program.command('start')
  .description('run the daemon in the foreground (logs are JSON lines on stdout)')
  .requiredOption('-c, --config <file>', 'configuration file')
  .action(async (opts: { config: string }) => {
    const { config, path } = loadOrExit(opts.config);
    try {
      await runDaemon(config, path);
      process.exit(0);
    } catch (err) {
      process.stderr.write(`impulse: ${(err as Error).message}\n`);
      process.exit(1);
    }
  });

program.command('check-config')
  .description('validate a configuration file and print the effective configuration, defaults filled in; '
    + 'with --domain, the delivery options in force for one (binding, domain) pair and the scope each comes from')
  .requiredOption('-c, --config <file>', 'configuration file')
  .option('-d, --domain <domain>', 'destination domain to show effective delivery options for')
  .option('-b, --binding <name>', 'binding for --domain', 'default')
  .action((opts: { config: string; domain?: string; binding: string }) => {
    const { document, config } = loadOrExit(opts.config);
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
    const valueWidth = Math.max(...rows.map(([, r]) => String(r.value).length));
    process.stdout.write(`# effective delivery options for binding ${opts.binding}, domain ${opts.domain.toLowerCase()}\n`);
    for (const [key, r] of rows) process.stdout.write(`${key.padEnd(width)}  ${String(r.value).padEnd(valueWidth)}  (${r.scope})\n`);
  });

await program.parseAsync(process.argv);
