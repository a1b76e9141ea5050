// The webhooks' pure decisions and their configuration: which webhook takes a record, the wait
// before a batch is sent again, the signature (checked against openssl's HMAC), how an answer is
// taken, and the configuration errors an operator sees.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { outcomeOf, retryDelay, signature, takes } from '../../src/webhooks/policy.js';

test('a webhook takes the events it names; with tenants, only records of those tenants', () => {
  const rows: Array<[Parameters<typeof takes>[0], string, string | undefined, boolean]> = [
    [{ events: ['delivery'] }, 'delivery', undefined, true],
    [{ events: ['delivery'] }, 'delivery', 'acme', true],
    [{ events: ['delivery'] }, 'reception', undefined, false],
    [{ events: ['delivery', 'reception'], tenants: ['acme'] }, 'reception', 'acme', true],
    [{ events: ['delivery'], tenants: ['acme'] }, 'delivery', 'other', false],
    [{ events: ['delivery'], tenants: ['acme'] }, 'delivery', undefined, false],
  ];
  for (const [sub, event, tenant, expected] of rows) assert.equal(takes(sub, event, tenant), expected, `${JSON.stringify(sub)} ${event} ${tenant}`);
});

test('a batch the endpoint did not take is sent again after a second, doubling up to five minutes', () => {
  assert.deepEqual([1, 2, 3, 4, 8, 9, 10, 50].map(retryDelay), [1000, 2000, 4000, 8000, 128_000, 256_000, 300_000, 300_000]);
});

test('the signature is the HMAC-SHA256 of timestamp, dot and body, as openssl computes it', () => {
  const body = '[{"id":"1733300000000-0","event":"delivery","qid":"Q1"}]';
  const openssl = execFileSync('openssl', ['dgst', '-sha256', '-hmac', 'key-of-sixteen-chars', '-r'], { input: `1733300000.${body}` }).toString().split(' ')[0];
  assert.equal(signature('key-of-sixteen-chars', 1733300000, body), `sha256=${openssl}`);
});

test('an answer is taken in the one reply shape: 2xx delivers, anything else is kept; a 4xx but 429 needs the operator', () => {
  const rows: Array<[Parameters<typeof outcomeOf>[0], string, boolean]> = [
    [{ status: 200 }, '250 2.0.0 HTTP 200', false],
    [{ status: 204 }, '250 2.0.0 HTTP 204', false],
    [{ status: 503 }, '451 4.4.2 HTTP 503, the batch is sent again later', false],
    [{ status: 429 }, '451 4.4.2 HTTP 429, the batch is sent again later', false],
    [{ status: 401 }, '451 4.4.2 HTTP 401, the batch is sent again later', true],
    [{ status: 301 }, '451 4.4.2 HTTP 301, the batch is sent again later', false],
    [{ error: 'connect ECONNREFUSED 127.0.0.1:9' }, '451 4.4.1 no answer: connect ECONNREFUSED 127.0.0.1:9', false],
  ];
  for (const [answer, text, operator] of rows) {
    const { reply, operator: op } = outcomeOf(answer);
    assert.equal(`${reply.code} ${reply.enhanced} ${reply.text}`, text);
    assert.equal(op, operator, text);
  }
});

function errorsOf(yaml: string): string[] {
  const r = parseConfigText(yaml, '/etc/impulse/impulse.yaml');
  assert.equal(r.ok, false, `expected errors for ${yaml}`);
  return r.ok ? [] : r.errors;
}

test('webhooks configuration: defaults filled in, and each mistake named by its path', () => {
  const ok = parseConfigText('webhooks: [{ name: a, url: "https://h.example/x", events: [delivery] }]', '/etc/impulse/impulse.yaml');
  assert.ok(ok.ok);
  assert.deepEqual(ok.config.webhooks[0], { name: 'a', url: 'https://h.example/x', events: ['delivery'], batch_size: 100, batch_wait: 1000, timeout: 10_000, headers: {}, max_queued: 1_000_000 });
  assert.equal(ok.config.webhook_retention, 3 * 86_400_000);
  const cases: Array<[string, RegExp]> = [
    ['webhooks: [{ name: a, url: "ftp://h.example/x", events: [delivery] }]', /webhooks\[0\]\.url.*http:\/\/ or https:\/\//],
    ['webhooks: [{ name: a, url: "https://h.example/x", events: [delivered] }]', /webhooks\[0\]\.events\[0\].*reception.*delivery.*transient_failure/],
    ['webhooks: [{ name: a, url: "https://h.example/x", events: [] }]', /webhooks\[0\]\.events/],
    ['webhooks: [{ name: a, url: "https://h.example/x", events: [delivery] }, { name: a, url: "https://h.example/y", events: [delivery] }]', /webhooks\[1\]\.name.*"a" is configured twice/],
    ['webhooks: [{ name: a, url: "https://h.example/x", events: [delivery], headers: { Content-Type: text/plain } }]', /webhooks\[0\]\.headers\.Content-Type.*set by the daemon/],
    ['webhooks: [{ name: a, url: "https://h.example/x", events: [delivery], secret: short }]', /webhooks\[0\]\.secret/],
    ['webhooks: [{ name: a, url: "https://h.example/x", events: [delivery], batchsize: 5 }]', /webhooks\[0\].*batchsize/],
  ];
  for (const [yaml, expected] of cases) assert.match(errorsOf(yaml).join('\n'), expected, yaml);
});
