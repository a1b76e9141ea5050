// `impulse top`: the busiest binding × domain pairs, refreshed in place as htop does: outcome
// rates, held and delayed mail, connections, the oldest message and the shaping actions holding
// each; sorted by the column whose key the user presses, `q` quits. `--once` (or output that is
// not a terminal) prints one plain table for scripts.
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { Top, TopRow } from '../../admin/protocol.js';
import type { AdminClient } from '../admin-client.js';
import { type Column, humanAge, table, truncate } from '../format.js';
import { type AdminOptions, adminCommand, clientOf, exitWith } from './shared.js';

/** Each sort: the key that picks it, the column's title, and the row's value (largest first, names A to Z). */
const SORTS = {
  active: { key: 'a', value: (r: TopRow) => r.active },
  delayed: { key: 'l', value: (r: TopRow) => r.delayed },
  connections: { key: 'c', value: (r: TopRow) => r.connections },
  delivered: { key: 'v', value: (r: TopRow) => r.delivered_per_s },
  deferred: { key: 't', value: (r: TopRow) => r.deferred_per_s },
  failed: { key: 'f', value: (r: TopRow) => r.failed_per_s },
  oldest: { key: 'o', value: (r: TopRow) => r.oldest_age_s ?? -1 },
  domain: { key: 'n', value: (r: TopRow) => r.domain },
} as const;
type SortKey = keyof typeof SORTS;
const SORT_NAMES = Object.keys(SORTS) as SortKey[];

const right = { align: 'right' } as const;
const COLUMNS: Column[] = [
  { title: 'DOMAIN' }, { title: 'BINDING' }, { title: 'DELIVERED/S', ...right }, { title: 'DEFERRED/S', ...right }, { title: 'FAILED/S', ...right },
  { title: 'ACTIVE', ...right }, { title: 'DELAYED', ...right }, { title: 'CONN', ...right }, { title: 'OLDEST', ...right }, { title: 'SHAPING' },
];
/** Lines above the table: the title and the keys. */
const HEADER_LINES = 2;
const SHAPING_WIDTH = 40;

function sorted(rows: readonly TopRow[], sort: SortKey): TopRow[] {
  const value = SORTS[sort].value;
  return [...rows].sort((a, b) => {
    const x = value(a);
    const y = value(b);
    const order = typeof x === 'string' ? x.localeCompare(y as string) : (y as number) - x;
    return order || a.domain.localeCompare(b.domain) || a.binding.localeCompare(b.binding);
  });
}

/**
 * The view: a title line, the keys, and the pairs sorted by `sort`, cut to `height` lines of a
 * terminal when given (plain output shows every row the daemon sent).
 */
export function renderTop(t: Top, sort: SortKey, at: Date, height?: number): string {
  const title = `impulse top: node ${t.node}, ${at.toISOString().slice(11, 19)}, ${t.total_rows} pairs, sorted by ${sort}`;
  const keys = `keys: ${SORT_NAMES.map((s) => `${SORTS[s].key} ${s}`).join(', ')}; q quits`;
  const rows = sorted(t.rows, sort);
  // A terminal that reports no size (0) shows every row, as plain output does.
  const shown = height ? rows.slice(0, Math.max(0, height - HEADER_LINES - 2)) : rows;
  const cells = shown.map((r) => [
    r.domain, r.binding, r.delivered_per_s.toFixed(2), r.deferred_per_s.toFixed(2), r.failed_per_s.toFixed(2),
    String(r.active), String(r.delayed), String(r.connections), r.oldest_age_s === undefined ? '-' : humanAge(r.oldest_age_s),
    r.shaping.length === 0 ? '-' : truncate(r.shaping.join(' '), SHAPING_WIDTH),
  ]);
  return `${title}\n${keys}\n${table(COLUMNS, cells)}`;
}

function sortKey(value: string): SortKey {
  if (!(SORT_NAMES as string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${SORT_NAMES.join(', ')}`);
  return value as SortKey;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0.2) throw new InvalidArgumentError('expected a number of seconds, at least 0.2');
  return n;
}

interface TopOptions extends AdminOptions {
  once?: boolean;
  sort: SortKey;
  interval: number;
}

/** Alternate screen and hidden cursor while the view runs; both undone at the end, whatever ends it. */
const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';
const HOME_CLEAR = '\x1b[H\x1b[2J';

/** Redraws every `interval` seconds and at each key until `q` (or Ctrl-C); an unreachable daemon is shown, not fatal. */
async function live(client: AdminClient, opts: TopOptions): Promise<void> {
  const { stdin, stdout } = process;
  let sort = opts.sort;
  let last: Top | undefined;
  let problem = '';
  const draw = () => {
    const body = last ? renderTop(last, sort, new Date(), stdout.rows) : 'waiting for the daemon…\n';
    stdout.write(`${HOME_CLEAR}${body}${problem ? `\n${problem}\n` : ''}`);
  };
  const refresh = async () => {
    try {
      last = await client.call('top');
      problem = '';
    } catch (err) {
      problem = `impulse: ${(err as Error).message}`;
    }
    draw();
  };
  stdout.write(ENTER);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => void refresh(), opts.interval * 1000);
    const quit = () => {
      clearInterval(timer);
      stdin.off('data', onKey);
      stdout.off('resize', draw);
      resolve();
    };
    const onKey = (key: string) => {
      if (key === 'q' || key === '\u0003') return quit();
      const picked = SORT_NAMES.find((s) => SORTS[s].key === key);
      if (picked) {
        sort = picked;
        draw();
      }
    };
    stdin.on('data', onKey);
    stdout.on('resize', draw);
    void refresh();
  });
  stdin.setRawMode(false);
  stdin.pause();
  stdout.write(LEAVE);
}

export function register(program: Command): void {
  adminCommand(program, 'top', 'a live view of the busiest domains and bindings: delivered, deferred and failed per second (this node, last minute), active and delayed mail, connections, oldest message, shaping actions; keys pick the sort, q quits')
    .option('--once', 'print the table once and exit (also when output is not a terminal)')
    .addOption(new Option('-s, --sort <column>', `sort by ${SORT_NAMES.join(', ')}`).default('active').argParser(sortKey))
    .addOption(new Option('-i, --interval <seconds>', 'seconds between refreshes').default(2).argParser(seconds))
    .action(async (opts: TopOptions) => {
      const client = clientOf(opts);
      try {
        if (opts.once || opts.json || !process.stdout.isTTY || !process.stdin.isTTY) {
          const t = await client.call('top');
          process.stdout.write(opts.json ? `${JSON.stringify(t, null, 2)}\n` : renderTop(t, opts.sort, new Date()));
          return;
        }
        await live(client, opts);
      } catch (err) {
        exitWith(err);
      }
    });
}
