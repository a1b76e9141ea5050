// `impulse summary`: the daemon at a glance, after Momentum's `summary`.
import type { Command } from 'commander';
import type { Counts, NodeSummary, Summary, WebhookSummary } from '../../admin/protocol.js';
import { type Column, fields, formatTime, humanAge, list, table } from '../format.js';
import { type AdminOptions, adminCommand, run } from './shared.js';

const COUNTS: ReadonlyArray<readonly [keyof Counts, string]> = [
  ['received', 'Received'], ['delivered', 'Delivered'], ['transient', 'Transient'], ['failed', 'Failed'],
];

const right = { align: 'right' } as const;
const NODE_COLUMNS: Column[] = [
  { title: 'NODE' }, { title: 'STATUS' }, { title: 'HOST' }, { title: 'INBOUND', ...right }, { title: 'OUTBOUND', ...right },
  { title: 'CONNECTING', ...right }, { title: 'HELD', ...right }, { title: 'DELIVERED/S', ...right }, { title: 'HEARTBEAT', ...right },
];

const WEBHOOK_COLUMNS: Column[] = [
  { title: 'WEBHOOK' }, { title: 'STATE' }, { title: 'QUEUED', ...right }, { title: 'OLDEST', ...right }, { title: 'LAST FAILURE' },
];

function webhookRow(w: WebhookSummary): string[] {
  const failing = w.state === 'failing' ? `${w.failures} failed since ${formatTime(w.failing_since!)}: ${w.last_reply}` : '-';
  return [w.name, w.state, String(w.queued), w.oldest_age_s === null ? '-' : humanAge(w.oldest_age_s), failing];
}

/** A silent node's figures are its last, not its present: shown as '-'. */
function nodeRow(n: NodeSummary): string[] {
  const live = (v: string) => (n.alive ? v : '-');
  return [
    n.name, n.alive ? 'alive' : 'silent', n.host, live(String(n.connections.inbound)), live(String(n.connections.outbound)),
    live(String(n.connections.connecting)), live(String(n.held)), live(n.rates.delivered.toFixed(2)),
    `${n.age_s < 10 ? `${n.age_s.toFixed(1)}s` : humanAge(n.age_s)} ago`,
  ];
}

export function renderSummary(s: Summary): string {
  const head = fields([
    ['Version', s.version],
    ['Node', s.node],
    ['Host', s.hostname],
    ['Uptime', `${humanAge(s.uptime_s)} (since ${formatTime(s.started_at)})`],
    ['Connections', `${s.connections.inbound} inbound, ${s.connections.outbound} outbound (+${s.connections.connecting} connecting)`],
    ['Queue', `${s.queue.active} active, ${s.queue.delayed} delayed, ${s.queue.waiting} waiting`],
    ['Active domains', String(s.active_domains)],
  ]);
  const counts = table(
    [{ title: 'RECIPIENTS' }, { title: 'TOTAL', align: 'right' }, { title: 'RATE/S', align: 'right' }],
    COUNTS.map(([key, label]) => [label, String(s.counts[key]), s.rates[key].toFixed(2)]),
  );
  const suspended = fields([['Suspended domains', list(s.suspended.domains)], ['Suspended bindings', list(s.suspended.bindings)]]);
  // A daemon started before an upgrade answers the newer CLI without nodes.
  const nodes = s.nodes ? `\n${table(NODE_COLUMNS, s.nodes.map(nodeRow))}` : '';
  const webhooks = s.webhooks?.length ? `\n${table(WEBHOOK_COLUMNS, s.webhooks.map(webhookRow))}` : '';
  return `${head}\n${counts}\n${suspended}${nodes}${webhooks}`;
}

export function register(program: Command): void {
  adminCommand(program, 'summary', 'show version, uptime, connections, queue sizes, delivery counts and rates, what is suspended, every node sharing the Redis, and each webhook\'s stream')
    .action((opts: AdminOptions) => run(opts, (c) => c.call('summary'), renderSummary));
}
