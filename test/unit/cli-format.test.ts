// The admin commands' human output: ages, tables, truncation, and whole renderings of fixtures.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DomainDetail, Mailq, MessageDetail, Summary } from '../../src/admin/protocol.js';
import { renderDomain } from '../../src/cli/commands/domain.js';
import { renderMailq } from '../../src/cli/commands/mailq.js';
import { renderMessage } from '../../src/cli/commands/message.js';
import { renderSummary } from '../../src/cli/commands/summary.js';
import { fields, formatSize, humanAge, humanMs, table, truncate, when } from '../../src/cli/format.js';

const NOW = Date.parse('2025-03-01T12:00:00Z');

test('ages keep two units at most', () => {
  const table: Array<[number, string]> = [
    [0, '0s'], [0.9, '0s'], [45, '45s'], [59, '59s'], [60, '1m00s'], [192, '3m12s'], [3599, '59m59s'],
    [3600, '1h00m'], [7500, '2h05m'], [86_399, '23h59m'], [86_400, '1d0h'], [273_600, '3d4h'], [-5, '0s'],
  ];
  for (const [seconds, expected] of table) assert.equal(humanAge(seconds), expected, `humanAge(${seconds})`);
});

test('throttle waits show milliseconds below a second', () => {
  const table: Array<[number, string]> = [[0, '0'], [250, '250ms'], [1500, '1.5s'], [12_000, '12s'], [90_000, '1m30s']];
  for (const [ms, expected] of table) assert.equal(humanMs(ms), expected, `humanMs(${ms})`);
});

test('times are UTC to the second with their distance from now', () => {
  assert.equal(when('2025-03-01T11:56:48.123Z', NOW), '2025-03-01T11:56:48Z (3m12s ago)');
  assert.equal(when('2025-03-01T14:05:00Z', NOW), '2025-03-01T14:05:00Z (in 2h05m)');
  assert.equal(when('2025-03-01T12:00:00.400Z', NOW), '2025-03-01T12:00:00Z (now)');
});

test('truncation keeps one line within the width', () => {
  const table: Array<[string, number, string]> = [
    ['421 4.7.0 Try again later', 60, '421 4.7.0 Try again later'],
    ['421 4.7.0 Try again later', 12, '421 4.7.0...'],
    ['550-5.1.1 first line\n550 5.1.1 second line', 80, '550-5.1.1 first line 550 5.1.1 second line'],
    ['abcdef', 2, 'ab'],
  ];
  for (const [text, max, expected] of table) assert.equal(truncate(text, max), expected, JSON.stringify([text, max]));
});

test('sizes', () => {
  assert.deepEqual([1, 1000, 12_345, 3 * 1024 * 1024].map(formatSize), ['1 byte', '1000 bytes', '12.1KB (12345 bytes)', '3.0MB (3145728 bytes)']);
});

test('table columns align, numbers to the right, with no trailing blanks', () => {
  const out = table([{ title: 'NAME' }, { title: 'N', align: 'right' }, { title: 'NOTE' }], [['a', '1', 'x'], ['longer', '100', '']]);
  assert.equal(out, 'NAME      N  NOTE\na         1  x\nlonger  100\n');
  assert.equal(fields([['A', '1'], ['Longer', '2']]), 'A:       1\nLonger:  2\n');
});

const summary: Summary = {
  version: '0.1.0',
  hostname: 'mta1.example.net',
  node: 'mta1',
  started_at: '2025-02-26T08:00:00.000Z',
  uptime_s: 273_600,
  connections: { inbound: 12, outbound: 40, connecting: 3 },
  queue: { active: 1200, delayed: 340, waiting: 5 },
  active_domains: 87,
  counts: { received: 123_456, delivered: 120_000, transient: 3000, failed: 45 },
  rates: { received: 10.5, delivered: 10.123, transient: 0.2, failed: 0 },
  suspended: { domains: ['example.com', 'foo.test'], bindings: [] },
  nodes: [
    {
      name: 'mta1', host: 'h1.example.net', pid: 812, version: '0.1.0', started_at: '2025-02-26T08:00:00.000Z', alive: true,
      last_heartbeat: '2025-03-01T11:59:59.600Z', age_s: 0.4, connections: { inbound: 12, outbound: 40, connecting: 3 }, held: 1200,
      rates: { received: 10.5, delivered: 10.123, transient: 0.2, failed: 0 },
    },
    {
      name: 'mta2', host: 'h2.example.net', pid: 9041, version: '0.1.0', started_at: '2025-02-27T08:00:00.000Z', alive: false,
      last_heartbeat: '2025-03-01T11:58:48Z', age_s: 72, connections: { inbound: 3, outbound: 17, connecting: 0 }, held: 310,
      rates: { received: 4, delivered: 3.5, transient: 0, failed: 0 },
    },
  ],
  webhooks: [
    { name: 'analytics', url: 'https://a.example/hook', queued: 0, oldest_age_s: null, state: 'posting' },
    {
      name: 'billing', url: 'https://b.example/hook', queued: 5120, oldest_age_s: 185, state: 'failing',
      failing_since: '2025-03-01T11:57:00.000Z', failures: 7, last_reply: '451 4.4.2 HTTP 503, the batch is sent again later',
    },
  ],
};

test('summary rendering', () => {
  assert.equal(renderSummary(summary), [
    'Version:         0.1.0',
    'Node:            mta1',
    'Host:            mta1.example.net',
    'Uptime:          3d4h (since 2025-02-26T08:00:00Z)',
    'Connections:     12 inbound, 40 outbound (+3 connecting)',
    'Queue:           1200 active, 340 delayed, 5 waiting',
    'Active domains:  87',
    '',
    'RECIPIENTS   TOTAL  RATE/S',
    'Received    123456   10.50',
    'Delivered   120000   10.12',
    'Transient     3000    0.20',
    'Failed          45    0.00',
    '',
    'Suspended domains:   example.com, foo.test',
    'Suspended bindings:  none',
    '',
    'NODE  STATUS  HOST            INBOUND  OUTBOUND  CONNECTING  HELD  DELIVERED/S  HEARTBEAT',
    'mta1  alive   h1.example.net       12        40           3  1200        10.12   0.4s ago',
    'mta2  silent  h2.example.net        -         -           -     -            -  1m12s ago',
    '',
    'WEBHOOK    STATE    QUEUED  OLDEST  LAST FAILURE',
    'analytics  posting       0       -  -',
    'billing    failing    5120   3m05s  7 failed since 2025-03-01T11:57:00Z: 451 4.4.2 HTTP 503, the batch is sent again later',
    '',
  ].join('\n'));
});

const longReply = `421 4.7.0 ${'x'.repeat(100)}`;
const mailq: Mailq = {
  rows: [
    { domain: 'example.com', binding: 'default', active: 120, delayed: 3, connections: 4, oldest_age_s: 192,
      last_error: { reply: longReply, at: '2025-03-01T11:59:00Z', flags: ['CONN_ERROR_CONNECT'] } },
    { domain: 'b.test', binding: 'b1', active: 0, delayed: 7, connections: 0, oldest_age_s: 7500 },
  ],
  total_rows: 5,
};

test('mailq rendering: error truncated to 60 characters off a terminal, to the width on one, footer when limited', () => {
  assert.equal(renderMailq(mailq), [
    'DOMAIN       BINDING  ACTIVE  DELAYED  CONN  OLDEST  LAST-ERROR',
    `example.com  default     120        3     4   3m12s  ${longReply.slice(0, 57)}...`,
    'b.test       b1            0        7     0   2h05m  -',
    '2 of 5 rows',
    '',
  ].join('\n'));
  assert.ok(renderMailq(mailq, 80).split('\n').every((l) => l.length <= 80));
  assert.equal(renderMailq({ rows: mailq.rows, total_rows: 2 }).split('\n').length, 4, 'no footer when all rows are shown');
  assert.equal(renderMailq({ rows: [], total_rows: 0 }), 'no queued mail\n');
});

test('domain rendering', () => {
  const d: DomainDetail = {
    domain: 'example.com', phase: 'delayed', delayed_until: '2025-03-01T12:12:04Z',
    mx: {
      phase: 'resolved', expires_at: '2025-03-01T12:45:00Z',
      hosts: [
        { host: 'mx2.example.com', preference: 20, addresses: [], siblings: [] },
        { host: 'mx1.example.com', preference: 10, siblings: ['other.test'], addresses: [
          { address: '192.0.2.1' },
          { address: '192.0.2.2', failed: { at: '2025-03-01T11:56:48Z', since_s: 192, until: '2025-03-01T12:06:48Z', flags: ['CONN_ERROR_CONNECT'] } },
        ] },
      ],
    },
    consecutive_failures: 3,
    last_error: { reply: '421 4.7.0 Try again later', at: '2025-03-01T11:57:50Z', flags: ['CONN_ERROR_CONNECT', 'CONN_ACTION_REQUEUE1'] },
    active: 12, delayed: 30,
    other_nodes: [{ node: 'mta2', binding: 'default', ready: 1, in_flight: 2, connections: 2, connecting: 1 }],
    shaping: [{
      id: 'gmail-rate|site:default:mx1.example.com', rule: 'gmail-rate', action: 'set', scope: 'site', binding: 'default', mx_host: 'mx1.example.com',
      options: { max_outbound_connections: 1, outbound_throttle_messages: '1/60' }, since: '2025-03-01T11:58:00Z', until: '2025-03-01T13:00:00Z',
      remaining_s: 3600, reply: '421 4.7.28 Our system has detected an unusual rate',
    }],
    bindings: [{
      binding: 'default', phase: 'paced', phase_detail: 'until 2025-03-01T12:01:00.000Z after 421 4.7.0 Try again later',
      suspended: false, ready: 3, in_flight: 2, connections: 2, connecting: 0, idle: 1,
      throttled_ms: { messages: 0, connections: 250 },
      limits: { max_outbound_connections: { value: 3, scope: 'adaptive' }, outbound_throttle_messages: { value: null, scope: 'no limit' } },
      adaptive: { max_outbound_connections: 3, signals: 4, last_signal: '2025-03-01T11:59:00Z', last_step_down: '2025-03-01T11:58:00Z' },
    }],
  };
  assert.equal(renderDomain(d, NOW), [
    'Domain:                example.com',
    'Phase:                 delayed until 2025-03-01T12:12:04Z (in 12m04s)',
    'Queue:                 12 active, 30 delayed',
    'Consecutive failures:  3',
    'Last error:            421 4.7.0 Try again later',
    'Last error at:         2025-03-01T11:57:50Z (2m10s ago)',
    'Last error flags:      CONN_ERROR_CONNECT|CONN_ACTION_REQUEUE1',
    'MX:                    resolved, expires 2025-03-01T12:45:00Z (in 45m00s)',
    'Shaping:               set max_outbound_connections=1 outbound_throttle_messages=1/60 on binding default :: site mx1.example.com until 2025-03-01T13:00:00Z (in 1h00m) (rule gmail-rate, after: 421 4.7.28 Our system has detected an unusual rate)',
    '',
    'PREF  MX-HOST          ADDRESS    STATUS',
    '  10  mx1.example.com  192.0.2.1  ok',
    '  10  mx1.example.com  192.0.2.2  failed 3m12s ago, skipped until 2025-03-01T12:06:48Z (in 6m48s) CONN_ERROR_CONNECT',
    '  20  mx2.example.com  -          no addresses',
    'Siblings of mx1.example.com: other.test',
    '',
    'BINDING  PHASE  SUSPENDED  READY  IN-FLIGHT  CONN  CONNECTING  IDLE  MSG-WAIT  CONN-WAIT',
    'default  paced  no             3          2     2           0     1         0      250ms',
    'Binding default is paced until 2025-03-01T12:01:00.000Z after 421 4.7.0 Try again later',
    '',
    'Limits for binding default:',
    '  OPTION                      VALUE  SCOPE',
    '  max_outbound_connections    3      (adaptive)',
    '  outbound_throttle_messages  unset  (no limit)',
    '  Adaptive: 4 rate or reputation deferrals, the last 2025-03-01T11:59:00Z; stepped down 2025-03-01T11:58:00Z',
    '',
    'Held on other nodes (counted above):',
    '  NODE  BINDING  READY  IN-FLIGHT  CONN  CONNECTING',
    '  mta2  default      1          2     2           1',
    '',
  ].join('\n'));
});

test('message rendering', () => {
  const m: MessageDetail = {
    qid: 'Q1A2B3', message_id: '<abc@example.org>', sender: 'alice@example.org', received_at: '2025-03-01T11:40:00Z', size_bytes: 12_345,
    jobs: [
      { job_id: '17', domain: 'example.com', recipients: ['bob@example.com', 'carol@example.com'], binding: 'default',
        state: 'delayed', waiting: 'retry', next_attempt: '2025-03-01T12:20:00Z', attempts: [
          { at: '2025-03-01T11:40:05.120Z', attempt: 1, outcome: 'deferred', reply: '421 4.7.0 Try again\nlater', bounce_class: 70,
            mx_host: 'mx1.example.com', mx_ip: '192.0.2.1', flags: ['CONN_ERROR_CONNECT'] },
          // Written before bounce classes were recorded.
          { at: '2025-03-01T11:45:05Z', attempt: 2, outcome: 'deferred', reply: '450 4.2.1 Mailbox busy',
            recipients: ['carol@example.com'], mx_host: 'mx1.example.com', mx_ip: '192.0.2.1' },
        ] },
      { job_id: '18', domain: 'b.test', recipients: ['dan@b.test'], state: 'waiting', attempts: [] },
    ],
  };
  assert.equal(renderMessage(m, NOW), [
    'Queue ID:    Q1A2B3',
    'Message-ID:  <abc@example.org>',
    'Sender:      alice@example.org',
    'Received:    2025-03-01T11:40:00Z (20m00s ago)',
    'Size:        12.1KB (12345 bytes)',
    '',
    'Job 17: example.com',
    '  Recipients:    bob@example.com, carol@example.com',
    '  Binding:       default',
    '  State:         delayed (retry)',
    '  Next attempt:  2025-03-01T12:20:00Z (in 20m00s)',
    '  TIME                  #  OUTCOME   MX-HOST/IP                 FLAGS/ACTION        BOUNCE-CLASS          REPLY',
    '  2025-03-01T11:40:05Z  1  deferred  mx1.example.com/192.0.2.1  CONN_ERROR_CONNECT  70 transient failure  421 4.7.0 Try again later',
    '  2025-03-01T11:45:05Z  2  deferred  mx1.example.com/192.0.2.1  -                   -                     carol@example.com: 450 4.2.1 Mailbox busy',
    '',
    'Job 18: b.test',
    '  Recipients:  dan@b.test',
    '  Binding:     -',
    '  State:       waiting',
    '  no attempts yet',
    '',
  ].join('\n'));
});
