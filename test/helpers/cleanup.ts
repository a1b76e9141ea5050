// Kills child processes and removes temp dirs a test file started, even when it ends early.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

// A failed assertion can end a test file before its finally blocks release children; orphaned
// daemons or redis servers would then hold ports and corrupt later runs. Only synchronous work is
// possible in an 'exit' handler, hence SIGKILL and rmSync.
const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let installed = false;

function reap(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', reap);
  // A signal skips 'exit', so reap first and then die of the same signal as before.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      reap();
      process.kill(process.pid, signal);
    });
  }
}

export function killOnExit(child: ChildProcess): void {
  install();
  children.add(child);
  child.once('exit', () => children.delete(child));
}

export function removeOnExit(dir: string): void {
  install();
  dirs.add(dir);
}

export function forgetDir(dir: string): void {
  dirs.delete(dir);
}
