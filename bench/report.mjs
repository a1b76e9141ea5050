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

/** Redis calls per delivered message by command, most frequent first (RESETSTAT also zeroes the INFO stats counters, so it runs before the first sample). */
export function logCommandstats(log, text, delivered) {
  const rows = [...text.matchAll(/^cmdstat_(\S+):calls=(\d+),usec=(\d+)/gm)]
    .map(([, cmd, calls, usec]) => ({ cmd, calls: Number(calls), usec: Number(usec) }))
    .sort((a, b) => b.calls - a.calls);
  for (const r of rows) {
    log(`  ${r.cmd.padEnd(22)} ${(r.calls / Math.max(1, delivered)).toFixed(2).padStart(8)}/msg ${(r.usec / Math.max(1, delivered)).toFixed(1).padStart(8)} us/msg`);
  }
}

/** The same from a map of calls by command (over several masters): per delivered message, most frequent first. */
export function logCallsPerMessage(log, calls, delivered) {
  for (const [cmd, n] of Object.entries(calls).sort((a, b) => b[1] - a[1])) {
    if (n > 0) log(`  ${cmd.padEnd(22)} ${(n / Math.max(1, delivered)).toFixed(2).padStart(8)}/msg`);
  }
}

/** One line over several runs: each numeric figure's median, event and error counts summed, figures every run shares. */
export function median(name, results) {
  const out = { workload: name, runs: results.length, median: true };
  for (const key of Object.keys(results[0])) {
    const values = results.map((r) => r[key]);
    if (values.every((v) => typeof v === 'number')) {
      const sorted = [...values].sort((a, b) => a - b);
      out[key] = sorted[Math.floor((sorted.length - 1) / 2)];
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
