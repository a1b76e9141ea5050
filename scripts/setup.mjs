// Brings a fresh clone to a runnable state: installs dependencies when they are missing or
// older than the lockfile, then compiles. Plain Node so it runs before anything is installed.
import { execSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd) => execSync(cmd, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });

const marker = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
if (!existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs) {
  console.error('impulse setup: installing the locked dependencies (npm ci)');
  run('npm ci --no-audit --no-fund');
}
run(`"${process.execPath}" node_modules/typescript/bin/tsc -p tsconfig.json`);
