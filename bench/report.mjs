// How the runner reports beside its JSON lines: the stderr tables (--timeline, --commandstats,
// W6's delivery curve), the warn-event counts and the median line over several runs.

/** The daemon's warn-or-worse log records, counted per event. */
export function eventCounts(logs) {
  const counts = {};
  for (const r of logs) {
    const key = r.event ?? (r.raw !== undefined ? 'non_json' : `level_${r.level}`);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

export function logTimeline(log, timeline) {
  log('per second since the first injection: sent, arrived, connections they arrived on; latency of those sent p50 p99 max (ms)');
  for (const t of timeline) log(`  ${t.second} ${t.n} ${t.arrived} ${t.conns} ${t.p50 ?? '-'} ${t.p99 ?? '-'} ${t.max ?? '-'}`);
}

/** Redis calls and µs per delivered message by command, summed over the masters, most frequent first. */
export function logCommandstats(log, calls, delivered) {
  const per = (v) => v / Math.max(1, delivered);
  for (const [cmd, c] of Object.entries(calls).filter(([, c]) => c.calls > 0).sort((a, b) => b[1].calls - a[1].calls)) {
    log(`  ${cmd.padEnd(22)} ${per(c.calls).toFixed(2).padStart(8)}/msg ${per(c.usec).toFixed(1).padStart(8)} us/msg`);
  }
}

/** The median; of an even count, the lower of the middle two (a value some run had). */
export const middle = (values) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];

/**
 * One line over several runs: each numeric figure's median (element by element for a list of
 * them, one per node or per master), event and error counts summed, figures every run shares.
 */
export function median(name, results) {
  const out = { workload: name, runs: results.length, median: true };
  for (const key of Object.keys(results[0])) {
    const values = results.map((r) => r[key]);
    if (values.every((v) => typeof v === 'number')) {
      out[key] = middle(values);
    } else if (values.every((v) => Array.isArray(v) && v.every((x) => typeof x === 'number'))) {
      out[key] = values[0].map((_, i) => middle(values.map((v) => v[i])));
    } else if (key === 'warn_events' || key === 'inject_errors') {
      const total = {};
      for (const v of values) for (const [k, c] of Object.entries(v ?? {})) total[k] = (total[k] ?? 0) + c;
      out[`${key}_all_runs`] = total;
    } else if (values.every((v) => v === values[0])) out[key] = values[0];
  }
  delete out.run;
  return out;
}

/** W6's delivery curve as a table: what the rate-limited MX accepted and deferred per 10 s, against its limit. */
export function logCurve(log, curve, limit) {
  log(`delivery curve per 10 s since injection started: accepted (250) and deferred (421) by the MX; accepted msg/s and as a fraction of ${limit} msg/s`);
  log('     t_s  accepted  deferred  msg_s  of_limit');
  for (const b of curve) {
    const rate = b.accepted / 10;
    log(`  ${String(b.t).padStart(6)}  ${String(b.accepted).padStart(8)}  ${String(b.deferred).padStart(8)}  ${rate.toFixed(1).padStart(5)}  ${(rate / limit).toFixed(2).padStart(8)}`);
  }
}
