// Runs the interoperability suite (test/interop/) against real MTAs: sets up, installs Debian's
// postfix, swaks and python3-dkim when they are missing, then runs dist/test/interop/*.test.js. Plain Node.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (text) => console.error(`impulse test:interop: ${text}`);

function run(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
  return r.status ?? 1;
}

// 1. The repository itself: dependencies and the compiled tests.
if (run(process.execPath, [join(root, 'scripts', 'setup.mjs')]) !== 0) process.exit(1);

// 2. The MTAs and the verifier. smtp-sink and postconf come with postfix; swaks needs Net::SSLeay for STARTTLS.
// dkimpy, the independent DKIM verifier, is Debian's python3-dkim: it goes into the system
// Python's dist-packages, so the check asks /usr/bin/python3, whatever python3 comes first on
// the PATH (nacl is its Ed25519 dependency).
const needed = {
  '/usr/sbin/postfix': 'postfix',
  '/usr/sbin/postconf': 'postfix',
  '/usr/sbin/smtp-sink': 'postfix',
  '/usr/bin/swaks': 'swaks',
};
const missing = [...new Set(Object.entries(needed).filter(([path]) => !existsSync(path)).map(([, pkg]) => pkg))];
const perlSsl = spawnSync('perl', ['-MNet::SSLeay', '-e', '1'], { stdio: 'ignore' }).status === 0;
if (!perlSsl) missing.push('libnet-ssleay-perl');
const dkimpy = spawnSync('/usr/bin/python3', ['-c', 'import dkim, nacl'], { stdio: 'ignore' }).status === 0;
if (!dkimpy) missing.push('python3-dkim');
if (missing.length > 0) {
  if (process.getuid?.() !== 0) {
    say(`missing Debian packages: ${missing.join(' ')}; install them as root (apt-get install ${missing.join(' ')}, ` +
      'answering "No configuration" for postfix) or run this as root');
    process.exit(1);
  }
  say(`installing ${missing.join(' ')} with apt-get (postfix preseeded to "No configuration")`);
  // "No configuration": the package writes no /etc/postfix/main.cf and starts no system Postfix;
  // the tests run instances of their own, each with its own config directory.
  execFileSync('debconf-set-selections', { input: 'postfix postfix/main_mailer_type select No configuration\n' });
  const aptEnv = { DEBIAN_FRONTEND: 'noninteractive' };
  const install = ['-y', '-q', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confdef',
    '-o', 'Dpkg::Options::=--force-confold', 'install', ...missing];
  if (run('apt-get', install, aptEnv) !== 0) {
    say('apt-get install failed; updating the package lists and trying once more');
    if (run('apt-get', ['-q', 'update'], aptEnv) !== 0 || run('apt-get', install, aptEnv) !== 0) process.exit(1);
  }
}

// 3. No system Postfix: its master would hold port 25 and the system queue. Stop one if the
// package (or anything else) started it.
const masterPid = '/var/spool/postfix/pid/master.pid';
if (existsSync(masterPid)) {
  const pid = Number(readFileSync(masterPid, 'utf8').trim());
  let alive = false;
  try {
    process.kill(pid, 0);
    alive = true;
  } catch {
    // stale pid file
  }
  if (alive) {
    say(`a system Postfix is running (master pid ${pid}); stopping it`);
    run('/usr/sbin/postfix', ['stop']);
  }
}
const port25 = await new Promise((resolve) => {
  const s = connect({ host: '127.0.0.1', port: 25 });
  s.once('connect', () => {
    s.destroy();
    resolve(true);
  });
  s.once('error', () => resolve(false));
});
if (port25) say('note: something listens on 127.0.0.1:25; it is not used by these tests');

// 4. The suite: every compiled interop test file, with node's runner and its summary.
const testDir = join(root, 'dist', 'test', 'interop');
const files = existsSync(testDir)
  ? readdirSync(testDir)
      .filter((f) => f.endsWith('.test.js'))
      .filter((f) => process.argv.length <= 2 || process.argv.slice(2).some((a) => f.includes(a)))
      .sort()
      .map((f) => join(testDir, f))
  : [];
if (files.length === 0) {
  say('no test files found under dist/test/interop');
  process.exit(1);
}
const started = Date.now();
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
  cwd: root,
  stdio: 'inherit',
});
say(`suite took ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(result.status ?? 1);
