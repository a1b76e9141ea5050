// Runs the compiled daemon as a separate process, exactly as an operator would, so tests see its
// real startup, signal handling, logs and exit codes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { killOnExit, removeOnExit } from './cleanup.js';
import { runToEnd } from './run.js';
import { Condition } from './wait.js';

// This file compiles to dist/test/helpers/daemon.js; the CLI to dist/src/cli/index.js.
export const CLI_PATH = fileURLToPath(new URL('../../src/cli/index.js', import.meta.url));

/** node's flags in a command line that starts the daemon: the words between `node` and the CLI's script. */
export function nodeFlagsOf(command: readonly string[]): string[] {
  const script = command.findIndex((word) => word.endsWith('/cli/index.js'));
  if (script < 1) throw new Error(`not a command that starts the daemon with node: ${command.join(' ')}`);
  return command.slice(1, script);
}

/** node's flags as `npm start` (and the systemd units and the image) give them: the daemon as shipped. */
export const SHIPPED_NODE_ARGS = nodeFlagsOf(
  (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start.split(' '),
);

/** A parsed pino line, or { raw } for a line that is not JSON. */
export type LogRecord = Record<string, any>;

export type DaemonOptions = {
  /** Where impulse.yaml goes and the process runs; a fresh temp dir (removed at exit) if omitted. */
  dir?: string;
  waitReady?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Node flags before the script, such as --cpu-prof (not allowed in NODE_OPTIONS). */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
  /** The CLI to start, another tree's (a pruned production tree, say); this checkout's by default. */
  cliPath?: string;
};

export type Daemon = {
  proc: ChildProcess;
  dir: string;
  configPath: string;
  logs: LogRecord[];
  readonly stderr: string;
  waitForLog(pred: (rec: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  waitForLogs(pred: (rec: LogRecord) => boolean, count: number, timeoutMs?: number): Promise<LogRecord[]>;
  /** Sends the signal, waits for exit and resolves with the exit code; SIGKILLs and rejects if it hangs. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  /** Settles after the process exited and its output was fully read. */
  exited: Promise<{ code: number | null; signal: string | null }>;
};

const TAIL_RECORDS = 20;
const TAIL_CHARS = 4000;

function parseLine(line: string): LogRecord {
  try {
    const value: unknown = JSON.parse(line);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as LogRecord;
  } catch {
    // not JSON: keep it verbatim
  }
  return { raw: line };
}

// Splits a stream into lines, keeping a final line that lacks its newline.
function onLines(stream: NodeJS.ReadableStream, handle: (line: string) => void): void {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    rest += chunk;
    let eol: number;
    while ((eol = rest.indexOf('\n')) >= 0) {
      handle(rest.slice(0, eol).replace(/\r$/, ''));
      rest = rest.slice(eol + 1);
    }
  });
  stream.on('end', () => {
    if (rest) handle(rest);
    rest = '';
  });
}

export async function startDaemon(config: object, opts: DaemonOptions = {}): Promise<Daemon> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'impulse-daemon-'));
  if (!opts.dir) removeOnExit(dir);
  const configPath = join(dir, 'impulse.yaml');
  // The default metrics port would collide between daemons running side by side.
  writeFileSync(configPath, stringify({ metrics: { listen: false }, ...config }));

  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), opts.cliPath ?? CLI_PATH, 'start', '-c', configPath], {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  killOnExit(proc);

  const changed = new Condition();
  const logs: LogRecord[] = [];
  let stderr = '';
  let exitInfo: { code: number | null; signal: string | null } | undefined;

  onLines(proc.stdout!, (line) => {
    if (line.trim() === '') return;
    logs.push(parseLine(line));
    changed.notify();
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    // 'close' rather than 'exit': it fires only after stdout and stderr are drained.
    proc.once('close', (code, signal) => {
      exitInfo = { code, signal };
      changed.notify();
      resolve(exitInfo);
    });
    proc.once('error', (err) => {
      stderr += `\n[spawn error] ${err.message}`;
      exitInfo = { code: null, signal: null };
      changed.notify();
      resolve(exitInfo);
    });
  });

  const tail = () =>
    `last ${TAIL_RECORDS} log records:\n${logs.slice(-TAIL_RECORDS).map((r) => JSON.stringify(r)).join('\n')}\n` +
    `stderr tail:\n${stderr.slice(-TAIL_CHARS)}`;

  const waitForLogs = (pred: (rec: LogRecord) => boolean, count: number, timeoutMs = 15000) =>
    changed.until(
      () => {
        const found = logs.filter(pred);
        if (found.length >= count) return found.slice(0, count);
        if (exitInfo) {
          const how = `code ${exitInfo.code}, signal ${exitInfo.signal}`;
          throw new Error(`daemon exited (${how}) with ${found.length}/${count} matching log records; ${tail()}`);
        }
        return undefined;
      },
      timeoutMs,
      () => `${logs.filter(pred).length} matching log record(s), wanted ${count}; ${tail()}`,
    );

  const daemon: Daemon = {
    proc,
    dir,
    configPath,
    logs,
    get stderr() {
      return stderr;
    },
    waitForLog: (pred, timeoutMs) => waitForLogs(pred, 1, timeoutMs).then((records) => records[0]!),
    waitForLogs,
    async stop(signal = 'SIGTERM', timeoutMs = 20000) {
      if (!exitInfo) proc.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          proc.kill('SIGKILL');
          reject(new Error(`daemon did not exit within ${timeoutMs} ms of ${signal}; ${tail()}`));
        }, timeoutMs);
      });
      try {
        return (await Promise.race([exited, hung])).code;
      } finally {
        clearTimeout(timer);
      }
    },
    exited,
  };

  if (opts.waitReady !== false) {
    try {
      await daemon.waitForLog((rec) => rec.event === 'ready', opts.readyTimeoutMs ?? 20000);
    } catch (err) {
      proc.kill('SIGKILL');
      await exited;
      throw new Error(`daemon did not become ready: ${(err as Error).message}`);
    }
  }
  return daemon;
}

export type CliResult = { code: number | null; stdout: string; stderr: string };

/** Runs one CLI command to completion, e.g. ['check-config', '-c', path]. */
export async function runCli(
  args: string[],
  opts: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  const { code, stdout, stderr } = await runToEnd(process.execPath, [CLI_PATH, ...args], {
    timeoutMs: opts.timeoutMs ?? 20000, what: `impulse ${args.join(' ')}`,
    ...(opts.cwd ? { cwd: opts.cwd } : {}), ...(opts.env ? { env: opts.env } : {}),
  });
  return { code, stdout, stderr };
}
