// The metrics: counters, rates, and gauges read from their sources at scrape time, failing sources included.
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { Metrics, type MetricsSources } from '../../src/observability/metrics.js';

function sources(over: Partial<MetricsSources> = {}): MetricsSources {
  return {
    queueCounts: async () => ({ waiting: 7, delayed: 11 }),
    held: () => 5,
    inTransit: () => 9,
    inbound: () => 3,
    outboundByBinding: () => new Map([['default', 2]]),
    redisPing: async () => 3.5,
    ...over,
  };
}

/** The value of the sample written exactly `series` (name plus label set), or undefined when absent; NaN stays NaN. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(m: Metrics): Promise<string> {
  return m.registry.metrics();
}

test('counts are totals since construction and rates are per second over the last 60 seconds', () => {
  let now = 1_000_000_000;
  const start = now;
  const m = new Metrics(sources(), () => now);
  for (let s = 0; s < 60; s++) {
    now = start + s * 1000;
    m.received('default', 2);
  }
  m.delivered('default', 30, 100);
  m.deferred('default', '4.4.1', 24, 6);
  m.failed('default', '5.1.1', 10, 3);
  now = start + 59_999;
  assert.deepEqual(m.rates(), { received: 2, delivered: 0.5, transient: 0.1, failed: 0.05 });
  assert.deepEqual(m.counts(), { received: 120, delivered: 30, transient: 6, failed: 3 });

  now = start + 60_000;
  assert.equal(m.rates().received, 118 / 60, 'the first second fell out of the window');
  m.received('default', 60);
  assert.equal(m.rates().received, (118 + 60) / 60, 'its bucket is reused for the new second, not added to');

  now = start + 200_000;
  assert.deepEqual(m.rates(), { received: 0, delivered: 0, transient: 0, failed: 0 });
  assert.deepEqual(m.counts(), { received: 180, delivered: 30, transient: 6, failed: 3 });
  m.close();
});

test('a scrape shows each counter with its labels and reads every gauge from the sources', async () => {
  let outbound = new Map([['default', 2], ['bulk', 0]]);
  const m = new Metrics(sources({ outboundByBinding: () => outbound }));
  m.received('default', 3);
  m.delivered('bulk', 4, 90_000);
  m.deferred('default', '4.4.1', 24, 2);
  m.failed('bulk', '5.1.1', 10, 1);
  m.failed('bulk', 'garbage from a remote server', 40, 1);
  m.migrated();
  let text = await scrape(m);
  assert.equal(sample(text, 'impulse_messages_received_total{binding="default"}'), 3);
  assert.equal(sample(text, 'impulse_messages_delivered_total{binding="bulk"}'), 4);
  assert.equal(sample(text, 'impulse_messages_deferred_total{binding="default",status="4.4.1",bounce_class="24"}'), 2);
  assert.equal(sample(text, 'impulse_messages_failed_total{binding="bulk",status="5.1.1",bounce_class="10"}'), 1);
  assert.equal(sample(text, 'impulse_messages_failed_total{binding="bulk",status="unknown",bounce_class="40"}'), 1);
  assert.equal(sample(text, 'impulse_connection_migrations_total'), 1);
  assert.equal(sample(text, 'impulse_delivery_latency_seconds_count'), 4, 'one observation per recipient');
  assert.equal(sample(text, 'impulse_delivery_latency_seconds_bucket{le="60"}'), 0);
  assert.equal(sample(text, 'impulse_delivery_latency_seconds_bucket{le="300"}'), 4);
  assert.equal(sample(text, 'impulse_queue_messages{state="active"}'), 5);
  assert.equal(sample(text, 'impulse_queue_messages{state="waiting"}'), 7);
  assert.equal(sample(text, 'impulse_queue_messages{state="delayed"}'), 11);
  assert.equal(sample(text, 'impulse_jobs_in_transit'), 9);
  assert.equal(sample(text, 'impulse_connections_inbound'), 3);
  assert.equal(sample(text, 'impulse_connections_outbound{binding="default"}'), 2);
  assert.equal(sample(text, 'impulse_connections_outbound{binding="bulk"}'), 0);
  assert.equal(sample(text, 'impulse_redis_up'), 1);
  assert.equal(sample(text, 'impulse_redis_rtt_seconds'), 0.0035);
  assert.match(text, /^nodejs_eventloop_lag_seconds /m);
  assert.match(text, /^process_resident_memory_bytes /m);

  outbound = new Map([['bulk', 1]]);
  text = await scrape(m);
  assert.equal(sample(text, 'impulse_connections_outbound{binding="default"}'), undefined, 'a binding no longer reported disappears');
  assert.equal(sample(text, 'impulse_connections_outbound{binding="bulk"}'), 1);
  m.close();
});

test('failing sources never fail a scrape: Redis down shows impulse_redis_up 0 and no stale values', async () => {
  let down = false;
  const m = new Metrics(sources({
    redisPing: async () => {
      if (down) throw new Error('ECONNREFUSED');
      return 2;
    },
    queueCounts: async () => {
      if (down) throw new Error('ECONNREFUSED');
      return { waiting: 1, delayed: 1 };
    },
  }));
  assert.equal(sample(await scrape(m), 'impulse_redis_up'), 1);
  down = true;
  const text = await scrape(m);
  assert.equal(sample(text, 'impulse_redis_up'), 0);
  assert.equal(sample(text, 'impulse_redis_rtt_seconds'), NaN, 'not 0, which would read as a fast Redis');
  assert.equal(sample(text, 'impulse_queue_messages{state="waiting"}'), undefined);
  assert.equal(sample(text, 'impulse_queue_messages{state="active"}'), 5, 'the in-memory count does not depend on Redis');
  m.close();

  const broken = (): never => {
    throw new Error('source bug');
  };
  const all = new Metrics({ queueCounts: broken, held: broken, inTransit: broken, inbound: broken, outboundByBinding: broken, redisPing: broken });
  const text2 = await scrape(all);
  assert.equal(sample(text2, 'impulse_redis_up'), 0);
  assert.equal(sample(text2, 'impulse_connections_inbound'), NaN);
  assert.equal(sample(text2, 'impulse_jobs_in_transit'), NaN);
  assert.equal(sample(text2, 'impulse_queue_messages{state="active"}'), undefined);
  all.close();
});

test('one Redis PING per scrape feeds both Redis gauges', async () => {
  let pings = 0;
  const m = new Metrics(sources({ redisPing: async () => ++pings }));
  const text = await scrape(m);
  assert.equal(pings, 1);
  assert.equal(sample(text, 'impulse_redis_rtt_seconds'), 0.001);
  await scrape(m);
  assert.equal(pings, 2);
  m.close();
});

test('a Redis PING that never answers counts as down after 2 s instead of holding the scrape', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const m = new Metrics(sources({ redisPing: () => new Promise<number>(() => {}) }));
    const pending = scrape(m);
    mock.timers.tick(2000);
    assert.equal(sample(await pending, 'impulse_redis_up'), 0);
    m.close();
  } finally {
    mock.timers.reset();
  }
});

test('connectionFailed counts only the CONN_ERROR_* flags, by flag', async () => {
  const m = new Metrics(sources());
  m.connectionFailed('default', ['CONN_ERROR_CONNECT_TIMEOUT', 'CONN_ACTION_REQUEUE1']);
  m.connectionFailed('default', ['CONN_ERROR_CONNECT_TIMEOUT']);
  m.connectionFailed('bulk', ['CONN_ERROR_NO_MXS_REACHABLE', 'CONN_ACTION_PURGE_DOMAIN']);
  const text = await scrape(m);
  assert.equal(sample(text, 'impulse_connection_failures_total{flag="CONN_ERROR_CONNECT_TIMEOUT"}'), 2);
  assert.equal(sample(text, 'impulse_connection_failures_total{flag="CONN_ERROR_NO_MXS_REACHABLE"}'), 1);
  assert.doesNotMatch(text, /CONN_ACTION_/);
  m.close();
});

test('adaptive limits that moved are gauges per binding, domain and option; none without', async () => {
  const none = await scrape(new Metrics(sources()));
  assert.equal(none.includes('impulse_adaptive_limit{'), false);
  const m = new Metrics(sources({ adaptive: () => [{ binding: 'default', domain: 'outlook.com', values: { connections: 3, perSecond: 42.5 } }] }));
  const text = await scrape(m);
  assert.equal(sample(text, 'impulse_adaptive_limit{binding="default",domain="outlook.com",option="max_outbound_connections"}'), 3);
  assert.equal(sample(text, 'impulse_adaptive_limit{binding="default",domain="outlook.com",option="outbound_throttle_messages"}'), 42.5);
  assert.equal(text.includes('option="max_deliveries_per_connection"'), false);
});

test('cluster leases this node holds are a gauge per lease key; none without', async () => {
  const none = await new Metrics(sources()).registry.metrics();
  assert.equal(none.includes('impulse_cluster_leases{'), false);
  const m = new Metrics(sources({ leases: () => new Map([['pair:default:gmail.com', 3], ['host:mx.example.net', 1]]) }));
  const text = await m.registry.metrics();
  assert.equal(sample(text, 'impulse_cluster_leases{lease="pair:default:gmail.com"}'), 3);
  assert.equal(sample(text, 'impulse_cluster_leases{lease="host:mx.example.net"}'), 1);
});
