// Runs the whole suite (or the named tests) on Node.js 24 LTS: the registry's node-<os>-<cpu>
// package carries its binary, fetched through npm's cache into var/node24 like any dependency,
// so these machines' Node 20 and a supported Node are both tested from one clone.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const NAME = `node-${process.platform}-${process.arch}`;

/** The newest 24.x binary, unpacked once per version. */
function node24() {
  const versions = [JSON.parse(execFileSync('npm', ['view', `${NAME}@24`, 'version', '--json'], { cwd: root, encoding: 'utf8' }))].flat();
  const latest = versions.at(-1);
  const dir = join(root, 'var', 'node24', latest);
  const binary = join(dir, 'package', 'bin', 'node');
  if (existsSync(binary)) return binary;
  console.error(`impulse test:node24: fetching ${NAME}@${latest}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('npm', ['pack', `${NAME}@${latest}`, '--pack-destination', dir, '--silent'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  execFileSync('tar', ['-xzf', join(dir, tarball), '-C', dir]);
  rmSync(join(dir, tarball));
  return binary;
}

const binary = node24();
const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
if (!version.startsWith('v24.')) {
  console.error(`impulse test:node24: ${binary} reports ${version}, not Node.js 24`);
  process.exit(1);
}
console.error(`impulse test:node24: the suite on Node.js ${version}`);
const result = spawnSync(binary, [join(root, 'scripts', 'test.mjs'), ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
