// The scheduler's pure policies, table by table: goal, caps, refill, admission, failure plans,
// throttles, and the domain-delay and ready-queue state machines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRate } from '../../src/config/units.js';
import { delayTransition } from '../../src/delivery/domain-record.js';
import * as F from '../../src/delivery/flags.js';
import { type FailurePlan, delayEnd, failurePlan } from '../../src/scheduler/failure-plan.js';
import { type Admission, type AdmissionFacts, PARK_FALLBACK_MS, admission, connectionGoal, refillCount, roomForConnections, windowLimit } from '../../src/scheduler/policy.js';
import { type QueueEvent, type QueuePhase, queueTransition } from '../../src/scheduler/ready-queue.js';
import { Throttle, Throttles } from '../../src/scheduler/throttle.js';

test('the connection goal grows with the active queue and never passes the limit or the messages there are', () => {
  const table: Array<[number, number, 'normal' | 'high', number]> = [
    [0, 32, 'normal', 0], [1, 32, 'normal', 1], [10, 32, 'normal', 4], [100, 32, 'normal', 21], [400, 32, 'normal', 32],
    [1_000_000, 32, 'normal', 32], [10, 32, 'high', 8], [100, 32, 'high', 30], [2, 3, 'normal', 1], [100, 3, 'high', 3],
    [5, 1, 'high', 1], [1, 1000, 'normal', 1], [3, 1000, 'high', 3], [50, 1000, 'normal', 50], [500, 1000, 'normal', 500],
  ];
  for (const [ready, limit, aggr, goal] of table) assert.equal(connectionGoal(ready, limit, aggr), goal, `${ready} ready, limit ${limit}, ${aggr}`);
});

test('room for connections is the smallest of goal, scope and server headroom', () => {
  const base = { goal: 5, queue: 2, scope: 0, scopeMax: undefined, server: 0, serverMax: 100 };
  assert.equal(roomForConnections(base), 3);
  assert.equal(roomForConnections({ ...base, scope: 9, scopeMax: 10 }), 1);
  assert.equal(roomForConnections({ ...base, server: 100 }), 0);
  assert.equal(roomForConnections({ ...base, queue: 7 }), 0, 'never negative');
  assert.equal(roomForConnections({ ...base, scope: 12, scopeMax: 10 }), 0, 'over a lowered cap');
});

test('a queue calls back parked mail once half empty, up to max_ready and the window\'s room', () => {
  const table: Array<[ready: number, incoming: number, maxReady: number, windowRoom: number, count: number, why: string]> = [
    [1000, 0, 1000, 9000, 0, 'full'],
    [501, 0, 1000, 9000, 0, 'more than half'],
    [500, 0, 1000, 9000, 500, 'half: fill it'],
    [0, 0, 1000, 9000, 1000, 'empty'],
    [0, 600, 1000, 9000, 0, 'promoted jobs on their way count'],
    [100, 300, 1000, 9000, 600, 'and are not asked for twice'],
    [0, 0, 1000, 250, 250, 'the window bounds it'],
    [0, 0, 1000, 0, 0, 'a full window promotes nothing'],
    [0, 0, 1000, -40, 0, 'nor does an overfull one'],
    [0, 0, 1, 9000, 1, 'max_ready 1'],
  ];
  for (const [ready, incoming, maxReady, windowRoom, count, why] of table) {
    assert.equal(refillCount({ ready, incoming, maxReady, windowRoom }), count, why);
  }
});

test('throttle syntax: "N" per second, "N/S" per S seconds or duration; bad text is refused', () => {
  assert.deepEqual(parseRate('10'), { count: 10, perMs: 1000 });
  assert.deepEqual(parseRate(10), { count: 10, perMs: 1000 });
  assert.deepEqual(parseRate('10/1'), { count: 10, perMs: 1000 });
  assert.deepEqual(parseRate('100/60'), { count: 100, perMs: 60_000 });
  assert.deepEqual(parseRate('5/1m'), { count: 5, perMs: 60_000 });
  for (const bad of ['0', '10/0', 'ten', '10/x', '-1', '1.5']) assert.equal(parseRate(bad), undefined, bad);
});

test('a throttle allows N events in any window of S and says how long to wait', () => {
  const t = new Throttle({ count: 3, perMs: 1000 });
  for (const at of [0, 10, 20]) {
    assert.equal(t.wait(at), 0);
    t.take(at);
  }
  assert.equal(t.wait(20), 980, 'the fourth waits for the first to leave the window');
  assert.equal(t.wait(1000), 0);
  t.take(1000);
  assert.equal(t.wait(1000), 10);
});

test('throttles are shared by the scope that defines them', () => {
  const throttles = new Throttles();
  const rate = { count: 1, perMs: 1000 };
  const a = throttles.get('domain /\\.example$/', rate);
  assert.equal(throttles.get('domain /\\.example$/', rate), a, 'two domains under one regex scope share one budget');
  assert.notEqual(throttles.get('domain other.example', rate), a);
  assert.equal(throttles.get('global', undefined), undefined, 'no rate, no throttle');
});

test('domain delay: it holds until its time or the first successful connection', () => {
  const why = { code: 451, enhanced: '4.4.1', text: 'delayed' };
  const delayed = delayTransition({ phase: 'normal' }, { kind: 'delay', until: 5000, reason: why });
  assert.deepEqual(delayed, { phase: 'delayed', until: 5000, reason: why });
  assert.equal(delayTransition(delayed, { kind: 'tick', now: 4999 }), delayed);
  assert.deepEqual(delayTransition(delayed, { kind: 'tick', now: 5000 }), { phase: 'normal' });
  assert.deepEqual(delayTransition(delayed, { kind: 'connected' }), { phase: 'normal' });
  assert.deepEqual(delayTransition(delayed, { kind: 'flush' }), { phase: 'normal' });
  assert.deepEqual(delayTransition({ phase: 'normal' }, { kind: 'tick', now: 1 }), { phase: 'normal' });
});

test('admission: stopping, suspended, shaping suspended, delayed, full, tight window, else held; the order decides', () => {
  const base: AdmissionFacts = {
    now: 1000, stopping: false, suspended: false, shapedUntil: undefined, delayedUntil: undefined, ready: 0, maxReady: 100, held: 0, windowLimit: 900, suspendedRecheck: 60_000,
  };
  const table: Array<[Partial<AdmissionFacts>, Admission, string]> = [
    [{}, { kind: 'hold' }, 'room everywhere'],
    [{ stopping: true, suspended: true }, { kind: 'park', reason: 'stopping', until: 1000, filed: false }, 'a stop parks for the next start, unfiled'],
    [{ suspended: true, delayedUntil: 9000 }, { kind: 'park', reason: 'suspended', until: 61_000, filed: true }, 'a suspension files, the recheck is the fallback'],
    [{ suspended: true, shapedUntil: 5000 }, { kind: 'park', reason: 'suspended', until: 61_000, filed: true }, 'an operator\'s suspension before a shaping one'],
    [{ shapedUntil: 5000, delayedUntil: 9000 }, { kind: 'park', reason: 'shaping suspended', until: 5000, filed: true }, 'a shaping suspension files until its end'],
    [{ delayedUntil: 9000, ready: 100 }, { kind: 'park', reason: 'domain delayed', until: 9000, filed: false }, 'a delayed domain: back at the delay\'s end'],
    [{ ready: 100 }, { kind: 'park', reason: 'active queue full', until: 1000 + PARK_FALLBACK_MS, filed: true }, 'max_ready reached'],
    [{ ready: 99 }, { kind: 'hold' }, 'one place left'],
    [{ held: 900, ready: 10 }, { kind: 'park', reason: 'active queue full', until: 1000 + PARK_FALLBACK_MS, filed: true }, 'the window\'s reserve is not for a queue holding 10'],
    [{ held: 900, ready: 9 }, { kind: 'hold' }, 'but is for one holding fewer'],
  ];
  for (const [facts, want, why] of table) assert.deepEqual(admission({ ...base, ...facts }), want, why);
  assert.equal(windowLimit(10_000), 9000, 'a tenth of the window is the reserve');
});

test('failure plans: which held mail a failed connection charges, when the domain is delayed, how long the queue pauses', () => {
  const base = { consecutiveFailures: 1, mxFailuresToDelay: 50, alreadyDelayed: false, hostFailureRetry: 120_000, now: 0 };
  const table: Array<[number, Partial<typeof base>, FailurePlan, string]> = [
    [F.CONN_ERROR_CONNECT | F.CONN_ACTION_REQUEUE1, {}, { charge: 'head', delayDomain: false, paceUntil: 120_000 }, 'requeue one, then pause host_failure_retry'],
    [F.CONN_ERROR_MX_LOOKUP_FAILED | F.CONN_ACTION_PURGE_DOMAIN, {}, { charge: 'domain', delayDomain: false }, 'purge: no pause, the lookup\'s expiry paces'],
    [F.CONN_ERROR_SOCKET, {}, { charge: 'none', delayDomain: false, paceUntil: 120_000 }, 'no action: nothing charged, still paused'],
    [F.CONN_ERROR_CONNECT | F.CONN_ACTION_REQUEUE1, { hostFailureRetry: 10 }, { charge: 'head', delayDomain: false, paceUntil: 1000 }, 'at least a second'],
    [F.CONN_ERROR_CONNECT | F.CONN_ACTION_REQUEUE1, { consecutiveFailures: 50 }, { charge: 'head', delayDomain: true }, 'the 50th failure delays the domain'],
    [F.CONN_ERROR_CONNECT | F.CONN_ACTION_REQUEUE1, { consecutiveFailures: 50, alreadyDelayed: true }, { charge: 'head', delayDomain: false, paceUntil: 120_000 }, 'not twice'],
    [F.CONN_ERROR_CONNECT | F.CONN_ACTION_REQUEUE1, { consecutiveFailures: 500, mxFailuresToDelay: 0 }, { charge: 'head', delayDomain: false, paceUntil: 120_000 }, '0 never delays'],
    [F.CONN_ERROR_SMTP_NULL_MX | F.CONN_ACTION_PURGE_DOMAIN, { consecutiveFailures: 50 }, { charge: 'domain', delayDomain: true }, 'a purge may reach the threshold too'],
  ];
  for (const [flags, facts, want, why] of table) assert.deepEqual(failurePlan({ flags, ...base, ...facts }), want, why);
});

test('a delayed domain waits for the earliest next attempt among its held mail, or one retry interval', () => {
  const policy = { retryInterval: 1000, maxRetryInterval: 8000, messageExpiration: 86_400_000 };
  const slow = { ...policy, retryInterval: 5000 };
  assert.equal(delayEnd(100, [], policy), 1100);
  assert.equal(delayEnd(100, [{ attempts: 2, policy }, { attempts: 0, policy: slow }], policy), 100 + 4000, 'third attempt: 4 s beats 5 s');
  assert.equal(delayEnd(100, [{ attempts: 9, policy }], policy), 100 + 8000, 'capped at max_retry_interval');
});

test('ready queue phase: pacing outlasts everything but a new failure or a flush; a sibling wait keeps its start', () => {
  const why = { code: 421, enhanced: '4.4.0', text: 'refused' };
  const paced: QueuePhase = { phase: 'paced', until: 5000, reason: why };
  const table: Array<[QueuePhase, QueueEvent, number, QueuePhase, string]> = [
    [{ phase: 'idle' }, paced, 0, paced, 'a failure paces'],
    [paced, { phase: 'served' }, 4999, paced, 'nothing else ends it early'],
    [paced, { phase: 'idle' }, 4999, paced, 'not even running out of mail'],
    [paced, { phase: 'held', by: 'domain_suspended' }, 1, paced, 'nor a suspension'],
    [paced, { phase: 'served' }, 5000, { phase: 'served' }, 'it ends at its time'],
    [paced, 'flushed', 1, { phase: 'idle' }, 'or at a flush'],
    [paced, { phase: 'paced', until: 9000, reason: why }, 1, { phase: 'paced', until: 9000, reason: why }, 'a new failure paces anew'],
    [{ phase: 'served' }, { phase: 'awaiting_sibling', since: 300 }, 300, { phase: 'awaiting_sibling', since: 300 }, 'a sibling wait starts'],
    [{ phase: 'awaiting_sibling', since: 300 }, { phase: 'awaiting_sibling', since: 900 }, 900, { phase: 'awaiting_sibling', since: 300 }, 'and keeps its start'],
    [{ phase: 'awaiting_sibling', since: 300 }, { phase: 'throttled', until: 700, throttle: 'outbound_throttle_connections' }, 400,
      { phase: 'throttled', until: 700, throttle: 'outbound_throttle_connections' }, 'statuses replace each other'],
    [{ phase: 'served' }, { phase: 'waiting', on: 'host_limit' }, 0, { phase: 'waiting', on: 'host_limit' }, 'a wait'],
    [{ phase: 'waiting', on: 'mx_lookup' }, { phase: 'idle' }, 0, { phase: 'idle' }, 'no mail, idle'],
  ];
  for (const [from, event, now, want, why] of table) assert.deepEqual(queueTransition(from, event, now), want, why);
});
