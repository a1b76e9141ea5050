// W7's measurement: the daemon holds a connection to a silent MX host for every message it took,
// and the bench reads what they cost it (memory per connection, CPU while they sit open) and
// checks that they all end when it is stopped.
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_MS = 250;
// A stopped daemon's sockets are closed by its exit at the latest; the sink sees that at once.
const CLOSE_WAIT_MS = 10_000;

const round = (v, digits = 0) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : null);

/** Polls the sink's silent addresses until `done(count)` or `deadline`; the last count. */
async function watch(sink, done, deadline) {
  let count = await sink.silent();
  while (!done(count) && Date.now() < deadline) {
    await sleep(POLL_MS);
    count = await sink.silent();
  }
  return count;
}

/**
 * Waits (at most `timeoutMs`) until the silent hosts hold `expected` connections, one per accepted
 * message, holds them `holdMs`, then stops the daemons with SIGTERM, as every run ends, and waits
 * for the connections to close. `rssBeforeKb` is the daemons' RSS before injection, `t0` its start.
 */
export async function holdOpen({ up, sink, expected, rssBeforeKb, t0, holdMs, timeoutMs, log }) {
  const opened = await watch(sink, (c) => c.open >= expected, Date.now() + timeoutMs);
  const allOpen = opened.open >= expected;
  log(allOpen ? `${opened.open} connections open; holding them ${holdMs / 1000} s` : `only ${opened.open} of ${expected} connections open after ${timeoutMs / 1000} s`);
  const openedAt = Date.now();
  const cpuBefore = up.cpu().daemonCpu;
  await sleep(holdMs);
  const held = await sink.silent();
  const cpu = up.cpu().daemonCpu - cpuBefore;
  const heldFor = (Date.now() - openedAt) / 1000;
  const rssKb = up.rssKb();
  const peakKb = up.peakRssKb();

  const stopAt = Date.now();
  await up.stop();
  const stopMs = Date.now() - stopAt;
  const after = await watch(sink, (c) => c.open === 0, Date.now() + CLOSE_WAIT_MS);
  return {
    open_conns: held.open,
    // Messages without an open connection at the end of the hold: never opened, or closed since.
    failed_conns: expected - held.open,
    all_open_after_ms: allOpen ? openedAt - t0 : null,
    ...(allOpen ? {} : { timed_out: true }),
    rss_before_mb: round(rssBeforeKb / 1024, 1),
    rss_open_mb: round(rssKb / 1024, 1),
    rss_per_conn_kb: round(held.open ? (rssKb - rssBeforeKb) / held.open : null, 2),
    daemon_cpu_pct_open: round((100 * cpu) / heldFor, 1),
    daemon_peak_rss_mb: round(peakKb / 1024, 1),
    stop_ms: stopMs,
    open_after_stop: after.open,
  };
}
