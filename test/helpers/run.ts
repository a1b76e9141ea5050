// Runs a command to its end with a deadline, collecting what it printed: stdout, stderr, and both
// in the order they came.
import { spawn } from 'node:child_process';
import { killOnExit } from './cleanup.js';

export type RunResult = { code: number | null; stdout: string; stderr: string; output: string };

export function runToEnd(command: string, args: string[], opts: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv; what: string }): Promise<RunResult> {
  const proc = spawn(command, args, {
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  killOnExit(proc);
  const out = { stdout: '', stderr: '', output: '' };
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
    out.stdout += c;
    out.output += c;
  });
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => {
    out.stderr += c;
    out.output += c;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${opts.what} still running after ${opts.timeoutMs} ms\n${out.output}`));
    }, opts.timeoutMs);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, ...out });
    });
  });
}
