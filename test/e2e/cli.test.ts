// The command line as an operator uses it: version, help, and configuration checking.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCli } from '../helpers/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'impulse-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const exampleConfig = fileURLToPath(new URL('../../../config/impulse.yaml', import.meta.url));
const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string };

function configFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

test('--version prints the package version', async () => {
  const r = await runCli(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), pkg.version);
});

test('every command has --help', async () => {
  const commands = ['start', 'check-config', 'summary', 'mailq', 'domain', 'flush', 'fail', 'suspend', 'resume', 'message', 'message show', 'message retry', 'message fail', 'reload', 'hash-password'];
  for (const args of [['--help'], ...commands.map((c) => [...c.split(' '), '--help'])]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')} exited ${r.code}`);
    assert.match(r.stdout, /Usage: impulse/);
  }
});

test('check-config prints the effective configuration of the shipped example with defaults filled in', async () => {
  const r = await runCli(['check-config', '-c', exampleConfig]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /retry_interval: 20m/);
  assert.match(r.stdout, /message_expiration: 24h/);
  assert.match(r.stdout, /prohibited_hosts:\n\s+- 0\.0\.0\.0\/8/);
  assert.match(r.stdout, /remote_smtp_port: 25/);
});

test('check-config reports every bad key with its path and exits 2', async () => {
  const path = configFile('bad.yaml', [
    'listen:',
    '  - port: 70000',
    '    relay_form: [127.0.0.1/32]',
    'retry_interval: soon',
    'tls: sometimes',
    'dns: { servers: ["not a server"] }',
    'bindings: [{ name: b1, bind_address: 127.0.0.10 }, { name: "bad name" }]',
    'binding_groups: [{ name: g, bindings: [b1, nosuch] }]',
    'binding_rules: [{ sender_domain: x.test, binding: missing }]',
    'bounce_class_rules: [{ match: "user (unknown", class: 80 }]',
  ].join('\n'));
  const r = await runCli(['check-config', '-c', path]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /listen\[0\]\.port: /);
  assert.match(r.stderr, /listen\[0\]\.relay_form: unknown key/);
  assert.match(r.stderr, /retry_interval: expected a duration/);
  assert.match(r.stderr, /tls: /);
  assert.match(r.stderr, /dns\.servers\[0\]: /);
  assert.match(r.stderr, /bindings\[1\]\.name: /);
  assert.match(r.stderr, /binding_groups\[0\]\.bindings\[1\]: unknown binding "nosuch"/);
  assert.match(r.stderr, /binding_rules\[0\]\.binding: unknown binding "missing"/);
  assert.match(r.stderr, /bounce_class_rules\[0\]\.match: invalid regular expression \/user \(unknown\/: Unterminated group/);
  assert.match(r.stderr, /bounce_class_rules\[0\]\.class: expected a bounce class: 1 \(undetermined\), 10 \(invalid recipient\)/);
  assert.equal(r.stdout, '');
});

test('start refuses a bad configuration with exit code 2 and the key path', async () => {
  const path = configFile('bad-start.yaml', 'max_retry_interval: 12 hours\n');
  const r = await runCli(['start', '-c', path]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /max_retry_interval: expected a duration/);
});

test('a missing or unparsable file is a clear error with exit code 2', async () => {
  const missing = await runCli(['check-config', '-c', join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /cannot read .*nope\.yaml/);
  const broken = await runCli(['check-config', '-c', configFile('broken.yaml', 'listen: [\n')]);
  assert.equal(broken.code, 2);
  assert.match(broken.stderr, /YAML/);
});

test('a missing redis-server binary is a clear startup error', async () => {
  const path = configFile('nobinary.yaml', [
    `redis: { embedded: true, dir: ${join(dir, 'redis')}, binary: /nonexistent/redis-server }`,
    'listen: [{ address: 127.0.0.1, port: 1 }]',
  ].join('\n'));
  const r = await runCli(['start', '-c', path]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /redis-server binary "\/nonexistent\/redis-server" not found/);
});

test('check-config --domain shows each delivery option in force for a binding and domain, with its scope', async () => {
  const path = configFile('scoped.yaml', [
    'domains: { example.com: { tls: required }, "/\\\\.com$/": { outbound_throttle_messages: "10/1", idle_timeout: 2s } }',
    'bindings: [{ name: b1, retry_interval: 1m, domains: { example.com: { connect_timeout: 9s } } }]',
    'binding_groups: [{ name: g, bindings: [b1], max_outbound_connections: 7 }]',
  ].join('\n'));
  const r = await runCli(['check-config', '-c', path, '--domain', 'example.com', '--binding', 'b1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^connect_timeout +9s +\(binding b1 :: domain example\.com\)$/m);
  assert.match(r.stdout, /^retry_interval +1m +\(binding b1\)$/m);
  assert.match(r.stdout, /^tls +required +\(domain example\.com\)$/m);
  assert.match(r.stdout, /^max_retry_interval +12h +\(global\)$/m);
  assert.match(r.stdout, /^max_outbound_connections +7 +\(binding_group g\)$/m);
  assert.match(r.stdout, /^outbound_throttle_messages +unset +\(no limit\)$/m, 'the literal key wins over the pattern');
  const other = await runCli(['check-config', '-c', path, '--domain', 'other.com', '--binding', 'b1']);
  assert.match(other.stdout, /^outbound_throttle_messages +10\/1 +\(domain \/\\\.com\$\/\)$/m);
  assert.match(other.stdout, /^idle_timeout +2s +\(domain \/\\\.com\$\/\)$/m);
  const unknown = await runCli(['check-config', '-c', path, '--domain', 'example.com', '--binding', 'nosuch']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown binding "nosuch"/);
});
