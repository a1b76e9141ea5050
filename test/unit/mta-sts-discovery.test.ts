// MTA-STS discovery step by step (RFC 8461 §3, §5.1): a policy is fetched when the TXT id is new
// or the cached copy expired, kept while its id stands, kept when a refresh fails, and never
// invented when the TXT record says nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { DnsResolver } from '../../src/dns/resolver.js';
import type { PolicyCache } from '../../src/mta-sts/cache.js';
import { type StsState, StsDiscovery } from '../../src/mta-sts/discovery.js';
import { type StsPolicy, StsError } from '../../src/mta-sts/policy.js';

type LogRecord = Record<string, unknown>;

const ENFORCE = 'version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 3600\n';
const TESTING = 'version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 3600\n';

function dnsError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/** A world of one domain: its TXT records (or an error code), its policy server's answer, a cache and a clock. */
function world() {
  const w = {
    txt: 'ENOTFOUND' as string[][] | string,
    served: ENFORCE as string | StsError,
    fetches: 0,
    now: 1_000_000,
    cache: new Map<string, StsPolicy>(),
    cacheBroken: false,
    logs: [] as LogRecord[],
  };
  const resolver: DnsResolver = {
    resolveMx: () => Promise.reject(dnsError('ENODATA')),
    resolve4: () => Promise.reject(dnsError('ENODATA')),
    resolveTxt: (name) => {
      assert.equal(name, '_mta-sts.example.com');
      return typeof w.txt === 'string' ? Promise.reject(dnsError(w.txt)) : Promise.resolve(w.txt);
    },
  };
  const cache: PolicyCache = {
    get: async (d) => {
      if (w.cacheBroken) throw new Error('Connection is closed.');
      return w.cache.get(d);
    },
    put: async (d, p) => void w.cache.set(d, p),
  };
  const discovery = new StsDiscovery({
    resolver, cache, now: () => w.now,
    fetch: async (domain) => {
      assert.equal(domain, 'example.com');
      w.fetches++;
      if (w.served instanceof StsError) throw w.served;
      return w.served;
    },
    log: pino({ level: 'debug' }, { write: (line: string) => void w.logs.push(JSON.parse(line) as LogRecord) }),
  });
  return { w, discover: (): Promise<StsState> => discovery.discover('example.com') };
}

const txt = (id: string): string[][] => [[`v=STSv1; id=${id};`]];

test('no TXT record, or an unrelated one, means no policy and no fetch', async () => {
  const { w, discover } = world();
  assert.deepEqual(await discover(), { kind: 'none' });
  w.txt = 'ENODATA';
  assert.deepEqual(await discover(), { kind: 'none' });
  w.txt = [['v=spf1 -all']];
  assert.deepEqual(await discover(), { kind: 'none' });
  assert.equal(w.fetches, 0);
});

test('a new id fetches the policy and caches it until max_age; the same id again is served from the cache', async () => {
  const { w, discover } = world();
  w.txt = txt('20260101');
  const first = await discover();
  assert.equal(first.kind, 'policy');
  assert.ok(first.kind === 'policy');
  assert.deepEqual([first.policy.id, first.policy.mode, first.policy.mx, first.policy.expiresAt], ['20260101', 'enforce', ['*.example.com'], w.now + 3600_000]);
  assert.equal(w.cache.get('example.com')?.id, '20260101');
  assert.equal(w.logs.find((r) => r.event === 'mta_sts_policy')?.mode, 'enforce');

  w.now += 1000;
  assert.equal((await discover()).kind, 'policy');
  assert.equal(w.fetches, 1, 'unchanged id: no second fetch');

  w.txt = txt('20260102');
  w.served = TESTING;
  const changed = await discover();
  assert.ok(changed.kind === 'policy');
  assert.deepEqual([changed.policy.id, changed.policy.mode, w.fetches], ['20260102', 'testing', 2]);

  w.now += 3600_000;
  await discover();
  assert.equal(w.fetches, 3, 'an expired policy is fetched again even under the same id');
});

test('a failed refresh keeps the cached policy in force and says why; without one, the domain is delivered as without a policy', async () => {
  const { w, discover } = world();
  w.txt = txt('a');
  await discover();
  w.txt = txt('b');
  w.served = new StsError('sts-policy-fetch-error', 'https://mta-sts.example.com/.well-known/mta-sts.txt: HTTP status 503');
  const kept = await discover();
  assert.ok(kept.kind === 'policy');
  assert.equal(kept.policy.id, 'a');
  assert.match(kept.stale ?? '', /HTTP status 503/);
  const warn = w.logs.find((r) => r.event === 'mta_sts_fetch_failed');
  assert.deepEqual([warn?.result_type, warn?.kept, warn?.id], ['sts-policy-fetch-error', 'a', 'b']);

  // A policy file that is not one is as good as none; nothing cached: unavailable.
  const fresh = world();
  fresh.w.txt = txt('c');
  fresh.w.served = 'mode: enforce\n';
  const unavailable = await fresh.discover();
  assert.ok(unavailable.kind === 'unavailable');
  assert.deepEqual([unavailable.id, unavailable.error.resultType], ['c', 'sts-policy-invalid']);
  assert.equal(fresh.w.cache.size, 0);
});

test('a TXT lookup failure or a vanished TXT record leaves a cached policy in force (RFC 8461 §8.3)', async () => {
  const { w, discover } = world();
  w.txt = txt('a');
  await discover();
  w.txt = 'ESERVFAIL';
  const failed = await discover();
  assert.ok(failed.kind === 'policy');
  assert.match(failed.stale ?? '', /_mta-sts\.example\.com: TXT lookup failed \(ESERVFAIL\)/);
  w.txt = 'ENOTFOUND';
  const gone = await discover();
  assert.ok(gone.kind === 'policy');
  assert.equal(gone.policy.id, 'a');
  assert.equal(w.fetches, 1);
});

test('two v=STSv1 records are no policy (RFC 8461 §3.1); a TXT failure with nothing cached is unavailable', async () => {
  const { w, discover } = world();
  w.txt = [['v=STSv1; id=a;'], ['v=STSv1; id=b;']];
  const two = await discover();
  assert.ok(two.kind === 'unavailable');
  assert.match(two.error.message, /more than one v=STSv1 TXT record/);
  w.txt = 'ETIMEOUT';
  const timeout = await discover();
  assert.ok(timeout.kind === 'unavailable');
  assert.equal(timeout.error.resultType, 'sts-policy-fetch-error');
  assert.equal(w.fetches, 0);
});

test('an unreadable cache is logged and the policy looked up afresh', async () => {
  const { w, discover } = world();
  w.cacheBroken = true;
  w.txt = txt('a');
  const s = await discover();
  assert.equal(s.kind, 'policy');
  assert.equal(w.fetches, 1);
  assert.ok(w.logs.some((r) => r.event === 'mta_sts_cache_error'));
});
