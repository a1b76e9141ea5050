// Medians of a measurement session (bench/session.sh): per variant, the runs' rate, latency,
// connections and CPU per message, from the runner's lines or from the shared harness's results
// (Postfix's, and ours through it);
// then our rate against Postfix's run of the same round, which the VM's drift moves less than
// either rate.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { middle } from './report.mjs';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node bench/session-report.mjs <session directory>');
  process.exit(2);
}

/** A file's lines that are not empty: a .jsonl file's records, a .dirs file's directories. */
const linesOf = (file) => readFileSync(join(dir, file), 'utf8').split('\n').filter(Boolean);

/** The median of the runs that have the figure. */
const median = (values) => {
  const have = values.filter((v) => typeof v === 'number');
  return have.length ? middle(have) : null;
};

const impulse = (r) => ({
  rate: r.e2e_msg_s, p50: r.latency_p50_ms, p99: r.latency_p99_ms, perConn: r.msgs_per_conn, conns: r.sink_conns,
  cpu: r.daemon_cpu_s_per_1k, redisCpu: r.redis_cpu_s_per_1k, lost: r.lost, duplicates: r.duplicates,
});
/** A shared harness run's figures: its relay's CPU is the whole process tree's, Redis's included. */
const harness = (r) => ({
  rate: r.e2e_msgs_s, p50: r.latency_ms.p50, p99: r.latency_ms.p99, perConn: r.msgs_per_connection.mean, conns: r.sink_connections,
  cpu: r.cpu.relay_us_per_msg / 1000, lost: r.lost, duplicates: r.duplicates,
});

/** Our run and the Postfix run it is compared with, as session.sh labels them. */
const PAIRS = [
  ['w5', 'w5-postfix-tuned'], ['w5-warm', 'w5-postfix-tuned'], ['w5-harness', 'w5-postfix-tuned'], ['w5', 'w5-postfix'],
  ['w1', 'w1-postfix'], ['w1-warm', 'w1-postfix'], ['w1-harness', 'w1-postfix'],
];
/** Each variant's runs, in round order, for the pairs below. */
const runsOf = new Map();

for (const file of readdirSync(dir).sort()) {
  let label, runs;
  if (file === 'yardstick.jsonl') {
    const lines = linesOf(file).map((l) => JSON.parse(l));
    console.log(`yardstick (bench/yardstick.mjs, at the start and at the end): ${lines.map((y) => `${y.yardstick_ns_per_iteration} ns`).join(', ')}`);
    continue;
  }
  if (file.endsWith('.jsonl')) {
    label = file.slice(0, -6);
    runs = linesOf(file).map((l) => JSON.parse(l));
    if (runs[0]?.workload === 'W7') {
      console.log(label, runs.map((r) => ({ open: r.open_conns, failed: r.failed_conns, kb_per_conn: r.rss_per_conn_kb, cpu_pct: r.daemon_cpu_pct_open, left: r.open_after_stop })));
      continue;
    }
    runs = runs.map(impulse);
  } else if (file.endsWith('.dirs')) {
    label = file.slice(0, -5);
    runs = linesOf(file).map((d) => harness(JSON.parse(readFileSync(join(d, 'run1', 'result.json'), 'utf8'))));
  } else continue;
  if (runs.length === 0) continue;
  runsOf.set(label, runs);
  const m = (k) => median(runs.map((r) => r[k]));
  console.log(`${label}: ${m('rate')} msg/s [${runs.map((r) => r.rate).join(', ')}], p50 ${m('p50')} ms, p99 ${m('p99')} ms,`
    + ` ${m('perConn')} msgs/conn (${m('conns')} conns), CPU ${m('cpu')}${m('redisCpu') === null ? '' : ` + Redis ${m('redisCpu')}`} ms/msg,`
    + ` lost ${runs.map((r) => r.lost).join('/')}, duplicates ${runs.map((r) => r.duplicates).join('/')}`);
}

for (const [ours, theirs] of PAIRS) {
  const a = runsOf.get(ours);
  const b = runsOf.get(theirs);
  if (!a || !b) continue;
  // Rounds pair up only when every round ran both (a failed Postfix run leaves no result).
  if (a.length !== b.length) {
    console.log(`${ours} / ${theirs} by round: not paired, ${a.length} runs against ${b.length}`);
    continue;
  }
  const ratios = a.map((run, i) => Number((run.rate / b[i].rate).toFixed(2)));
  console.log(`${ours} / ${theirs} by round: ${ratios.join(', ')} (median ${middle(ratios)})`);
  // Postfix's CPU per message (its relay processes) as the machine's yardstick for C: ours (daemon
  // and Redis; a harness run's relay CPU holds both) divided by it moves with our code, not the VM.
  const shares = a.map((run, i) => Number(((run.cpu + (run.redisCpu ?? 0)) / b[i].cpu).toFixed(2)));
  console.log(`${ours} / ${theirs} CPU per message by round: ${shares.join(', ')} (median ${middle(shares)})`);
}
