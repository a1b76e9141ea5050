// What every admin command shares: its options, finding and loading the config, and turning
// the daemon's answer into output or an exit code.
import { existsSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type LoadResult, loadConfig } from '../../config/load.js';
import { AdminClient, CliError, EXIT, endpointOf } from '../admin-client.js';

const SYSTEM_CONFIG = '/etc/impulse/impulse.yaml';

export function loadOrExit(path: string): Extract<LoadResult, { ok: true }> {
  const result = loadConfig(path);
  if (!result.ok) {
    process.stderr.write(`impulse: invalid configuration ${path}:\n${result.errors.map((e) => `  ${e}`).join('\n')}\n`);
    process.exit(EXIT.usage);
  }
  return result;
}

function defaultConfigPath(): string {
  return process.env.IMPULSE_CONFIG || (existsSync(SYSTEM_CONFIG) ? SYSTEM_CONFIG : 'config/impulse.yaml');
}

export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number of at least 1');
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number of seconds above 0');
  return n;
}

export interface AdminOptions {
  config?: string;
  json?: boolean;
  timeout: number;
}

/** A subcommand that talks to the running daemon, with the options all of them take. */
export function adminCommand(parent: Command, nameAndArgs: string, description: string, opts?: { isDefault?: boolean }): Command {
  return parent.command(nameAndArgs, opts)
    .description(description)
    .option('-c, --config <file>', `configuration file of the daemon (default: $IMPULSE_CONFIG, else ${SYSTEM_CONFIG} if it exists, else config/impulse.yaml)`)
    .option('--json', 'print the admin API response as JSON instead of text')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for the daemon').default(60).argParser(positiveNumber));
}

/** A client of the daemon the options name (its config found as the help says). */
export function clientOf(opts: AdminOptions): AdminClient {
  const { config, path } = loadOrExit(opts.config ?? defaultConfigPath());
  return new AdminClient(endpointOf(config.admin), path, opts.timeout * 1000);
}

/** A failure of the daemon's, as a message and its exit code. */
export function exitWith(err: unknown): never {
  if (!(err instanceof CliError)) throw err;
  process.stderr.write(`impulse: ${err.message}\n${err.details.map((d) => `  ${d}\n`).join('')}`);
  process.exit(err.exitCode);
}

/** One request: the answer printed as JSON or rendered text, a failure as a message and its exit code. */
export async function run<T>(opts: AdminOptions, call: (client: AdminClient) => Promise<T>, render: (result: T) => string): Promise<void> {
  const client = clientOf(opts);
  try {
    const result = await call(client);
    process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : render(result));
  } catch (err) {
    exitWith(err);
  }
}
