// `impulse summary`: the daemon at a glance, after Momentum's `summary`.
import type { Command } from 'commander';
import type { Counts, Summary } from '../../admin/protocol.js';
import { fields, formatTime, humanAge, list, table } from '../format.js';
import { type AdminOptions, adminCommand, run } from './shared.js';

const COUNTS: ReadonlyArray<readonly [keyof Counts, string]> = [
  ['received', 'Received'], ['delivered', 'Delivered'], ['transient', 'Transient'], ['failed', 'Failed'],
];

export function renderSummary(s: Summary): string {
  const head = fields([
    ['Version', s.version],
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
  return `${head}\n${counts}\n${suspended}`;
}

export function register(program: Command): void {
  adminCommand(program, 'summary', 'show version, uptime, connections, queue sizes, delivery counts and rates, and what is suspended')
    .action((opts: AdminOptions) => run(opts, (c) => c.call('summary'), renderSummary));
}
