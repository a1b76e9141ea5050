// `impulse mailq`: queued mail per (domain, binding), largest queues first.
import type { Command } from 'commander';
import type { Mailq } from '../../admin/protocol.js';
import { type Column, humanAge, table, truncate } from '../format.js';
import { type AdminOptions, adminCommand, positiveInteger, run } from './shared.js';

/** Room for the last error when the output is not a terminal, so piped lines stay readable. */
const ERROR_WIDTH = 60;
/** Least room left for the last error on a narrow terminal: less says nothing. */
const MIN_ERROR_WIDTH = 20;

const COLUMNS: Column[] = [
  { title: 'DOMAIN' }, { title: 'BINDING' }, { title: 'ACTIVE', align: 'right' }, { title: 'DELAYED', align: 'right' },
  { title: 'CONN', align: 'right' }, { title: 'OLDEST', align: 'right' }, { title: 'LAST-ERROR' },
];

/** `width`: the terminal's, to fit the last error in; undefined when output is not a terminal. */
export function renderMailq(q: Mailq, width?: number): string {
  if (q.rows.length === 0) return 'no queued mail\n';
  const rows = q.rows.map((r) => [
    r.domain, r.binding, String(r.active), String(r.delayed), String(r.connections),
    r.oldest_age_s === undefined ? '-' : humanAge(r.oldest_age_s), r.last_error?.reply ?? '-',
  ]);
  const used = COLUMNS.slice(0, -1).reduce((sum, c, i) => sum + Math.max(c.title.length, ...rows.map((r) => r[i]!.length)) + 2, 0);
  const room = width === undefined ? ERROR_WIDTH : Math.max(MIN_ERROR_WIDTH, width - used);
  for (const r of rows) r[6] = truncate(r[6]!, room);
  const footer = q.rows.length < q.total_rows ? `${q.rows.length} of ${q.total_rows} rows\n` : '';
  return table(COLUMNS, rows) + footer;
}

interface MailqOptions extends AdminOptions {
  domain?: string;
  binding?: string;
  limit: number;
}

export function register(program: Command): void {
  adminCommand(program, 'mailq', 'list queued mail per domain and binding, largest queues first; held mail and connections count every live node sharing the Redis')
    .option('-d, --domain <domain>', 'only this destination domain')
    .option('-b, --binding <name>', 'only this binding')
    .option('-n, --limit <rows>', 'rows to show at most', positiveInteger, 100)
    .action((opts: MailqOptions) => run(
      opts,
      (c) => c.call('mailq', { query: { domain: opts.domain?.toLowerCase(), binding: opts.binding, limit: opts.limit } }),
      (q) => renderMailq(q, process.stdout.isTTY ? process.stdout.columns : undefined),
    ));
}
