// Scope fallback as a table: binding::domain > binding_group::domain > binding > binding_group >
// domain > global, literal domain keys before /regex/ keys, regex keys in written order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { OptionScopes, explainOptions, largestScopedValue } from '../../src/config/scopes.js';

const yaml = `
connect_timeout: 60s
domains:
  example.com: { tls: required, retry_interval: 5m }
  /\\.example\\.net$/: { connect_timeout: 10s }
  /example/: { connect_timeout: 11s, message_expiration: 3d }
bindings:
  - name: b1
    retry_interval: 1m
    domains:
      example.com: { retry_interval: 30s }
  - name: b2
binding_groups:
  - name: pool
    bindings: [b1, b2]
    tls: "no"
    domains:
      /^example\\.(com|org)$/: { data_timeout: 20s }
`;

function load() {
  const r = parseConfigText(yaml, '/tmp/scopes.yaml');
  assert.ok(r.ok, r.ok ? '' : r.errors.join('; '));
  return r;
}

test('each option comes from the most specific scope that sets it', () => {
  const { document } = load();
  const table: Array<[string, string, string, unknown, string]> = [
    ['b1', 'example.com', 'retry_interval', '30s', 'binding b1 :: domain example.com'],
    ['b1', 'example.com', 'data_timeout', '20s', 'binding_group pool :: domain /^example\\.(com|org)$/'],
    ['b1', 'other.test', 'retry_interval', '1m', 'binding b1'],
    ['b2', 'other.test', 'tls', 'no', 'binding_group pool'],
    ['default', 'example.com', 'tls', 'required', 'domain example.com'],
    ['default', 'example.com', 'retry_interval', '5m', 'domain example.com'],
    ['default', 'mx.example.net', 'connect_timeout', '10s', 'domain /\\.example\\.net$/'],
    ['default', 'example.com', 'connect_timeout', '60s', 'global'],
    ['default', 'EXAMPLE.NET.test', 'connect_timeout', '11s', 'domain /example/'],
    ['default', 'other.test', 'greeting_timeout', '300s', 'global'],
  ];
  for (const [binding, domain, key, value, scope] of table) {
    const r = explainOptions(document, binding, domain)[key as 'tls'];
    assert.deepEqual(r, { value, scope }, `${binding} ${domain} ${key}`);
  }
});

test('a literal domain key wins over patterns; patterns are tried in written order', () => {
  const { document } = load();
  assert.equal(explainOptions(document, 'default', 'example.com').connect_timeout.scope, 'global', 'example.com matches its literal key only');
  assert.equal(explainOptions(document, 'default', 'a.example.net').connect_timeout.value, '10s', 'the first matching pattern');
});

test('runtime values are in milliseconds; the longest expiration in any scope bounds body retention', () => {
  const { config } = load();
  const scopes = new OptionScopes(config);
  assert.equal(scopes.get('b1', 'example.com').retry_interval, 30_000);
  assert.equal(scopes.get('default', 'x.test').connect_timeout, 60_000);
  assert.equal(largestScopedValue(config, 'message_expiration'), 3 * 86_400_000);
});

test('invalid regex keys and unknown options inside a scope are config errors with their path', () => {
  const r = parseConfigText('domains:\n  "/[/": { tls: "no" }\n  ok.test: { tls_mode: x }\n', '/tmp/x.yaml');
  assert.ok(!r.ok);
  assert.ok(r.errors.includes('domains./[/: invalid regular expression /[/'), r.errors.join('; '));
  assert.ok(r.errors.includes('domains.ok.test.tls_mode: unknown key'), r.errors.join('; '));
});

test('the TLS policy keys resolve per scope over their global defaults; tls_ca_file is relative to the config file', () => {
  const r = parseConfigText(`
tls_ca_file: certs/private-ca.pem
domains:
  bank.test: { tls: required, tls_verify: host }
bindings:
  - name: b1
    tls_ifavailable_fallback: false
    domains:
      bank.test: { tls_verify: ca }
`, '/etc/impulse/impulse.yaml');
  assert.ok(r.ok, r.ok ? '' : r.errors.join('; '));
  const tlsOf = (binding: string, domain: string) => {
    const o = new OptionScopes(r.config).get(binding, domain);
    return [o.tls, o.tls_verify, o.tls_ifavailable_fallback];
  };
  assert.deepEqual(tlsOf('default', 'other.test'), ['ifavailable', 'no', true]);
  assert.deepEqual(tlsOf('default', 'bank.test'), ['required', 'host', true]);
  assert.deepEqual(tlsOf('b1', 'bank.test'), ['required', 'ca', false]);
  assert.deepEqual(explainOptions(r.document, 'b1', 'bank.test').tls_verify, { value: 'ca', scope: 'binding b1 :: domain bank.test' });
  assert.deepEqual(explainOptions(r.document, 'b1', 'other.test').tls_ifavailable_fallback, { value: false, scope: 'binding b1' });
  assert.equal(r.config.tls_ca_file, '/etc/impulse/certs/private-ca.pem');
});

test('a tls_verify value outside no, ca, host is a config error with its path', () => {
  const r = parseConfigText('domains:\n  bank.test: { tls_verify: "yes", tls_ifavailable_fallback: sometimes }\n', '/tmp/x.yaml');
  assert.ok(!r.ok);
  assert.ok(r.errors.some((e) => e.startsWith('domains.bank.test.tls_verify: ')), r.errors.join('; '));
  assert.ok(r.errors.some((e) => e.startsWith('domains.bank.test.tls_ifavailable_fallback: ')), r.errors.join('; '));
});
