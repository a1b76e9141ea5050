// The benchmark runner: `npm run bench -- <W0|W1|…> [--runs 3] [--n 20000] ...`, its flags read
// by bench/options.mjs. Each run gets a fresh temp dir, a DNS server and a counting sink on
// loopback, the Redis of `--redis` (the daemon's embedded one unless told) and fresh daemons on it
// (the built CLI, as an operator starts it; `--nodes N` of them as a cluster); it injects the
// workload, waits for the sink to have every accepted message, and prints one JSON result line.
// After all runs it prints the median line. See bench/README.md for what each figure means.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeOnExit } from '../dist/test/helpers/cleanup.js';
import { SHIPPED_NODE_ARGS, runCli } from '../dist/test/helpers/daemon.js';
import { startDns } from '../dist/test/helpers/dns.js';
import { freePort } from '../dist/test/helpers/ports.js';
import { benchDaemonConfig, dkimKeys, startDaemons } from './daemons.mjs';
import { inject } from './inject.mjs';
import { publishPolicies } from './mta-sts.mjs';
import { holdOpen } from './open-connections.mjs';
import { flags, name, opts, redis, waitReplicas, workload } from './options.mjs';
import { callsByCommand, masterDelta, startTopology } from './redis-topology.mjs';
import { eventCounts, logCommandstats, logCurve, logTimeline, median } from './report.mjs';
import { startSink } from './sink.mjs';
import { HELD_DOMAIN, SLOW_DOMAIN, spreadRecipient } from './workloads.mjs';

const log = (msg) => process.stderr.write(`[bench ${name} ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const round = (v, digits = 0) => (v === null || v === undefined || !Number.isFinite(v) ? null : Number(v.toFixed(digits)));
const rateOf = (count, fromMs, toMs) => (toMs > fromMs ? count / ((toMs - fromMs) / 1000) : null);
/** The daemon's outbound idle_timeout (5 s) and a second: the warm-up's connections are closed by then. */
const WARM_CONNECTIONS_CLOSE_MS = 6000;

/** Every daemon's CPU and the masters' counters, for the difference between two moments. */
async function sample(up, topology) {
  const masters = await topology.sample();
  const { commands, forkUsec, usedMemory, peakMemory } = masterDelta(new Map(), masters);
  return { at: Date.now(), ...up.cpu(), masters, commands, forkUsec, usedMemory, peakMemory };
}

/**
 * Resolves once the consumer has taken every waiting job, and with `active` also let go of every
 * one it held: a suspended backlog is then all parked. A tarpitted one keeps max_ready held.
 */
async function allParked(redis, active = true) {
  const left = async () => (await redis.llen('impulse:delivery:wait')) + (active ? await redis.llen('impulse:delivery:active') : 0);
  while ((await left()) > 0) {
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function admin(configPath, command, domain) {
  const r = await runCli([command, domain, '-c', configPath]);
  if (r.code !== 0) throw new Error(`impulse ${command} ${domain} exited ${r.code}: ${r.stderr || r.stdout}`);
}

/** The figures every workload reports for the injection with `prefix`, taken from the sink. */
async function deliveryFigures(sink, prefix, injected, timeoutMs) {
  const arrived = await sink.waitFor(prefix, injected.accepted.length, timeoutMs);
  if (arrived.timedOut) log(`timed out: ${arrived.arrived}/${injected.accepted.length} arrived`);
  // A duplicate delivered just after the last original still counts.
  await new Promise((r) => setTimeout(r, 500));
  const s = await sink.summary(prefix, injected.accepted, injected.t0);
  if (s.lost) log(`lost (first ${s.lostSample.length}): ${s.lostSample.join(' ')}`);
  return {
    summary: s,
    figures: {
      accepted: injected.accepted.length,
      inject_failed: injected.failed,
      delivered: s.unique,
      e2e_msg_s: round(rateOf(s.unique, injected.t0, s.lastArrival), 1),
      inject_msg_s: round(rateOf(injected.accepted.length, injected.t0, injected.lastAck), 1),
      latency_p50_ms: s.latencyP50,
      latency_p99_ms: s.latencyP99,
      msgs_per_conn: round(s.connections ? s.unique / s.connections : null, 1),
      ...(flags.dkim ? { dkim: flags.dkim, signed: s.signed } : {}),
      sink_conns: s.connections,
      duplicates: s.duplicates,
      lost: s.lost,
      // Lost then includes mail still on its way when the wait ended.
      ...(arrived.timedOut ? { timed_out: true } : {}),
      ...(Object.keys(injected.errors).length ? { inject_errors: injected.errors } : {}),
    },
  };
}

/**
 * Every node's config but its own part (intake, admin socket, node name) and its Redis: the
 * bench's, the workload's and --config over them (whose `redis` keys go over the topology's).
 */
function baseConfig(dir, dns, sinkPort, policies) {
  return {
    ...benchDaemonConfig(dns.server, sinkPort),
    ...(flags.dkim ? { dkim: dkimKeys(dir, flags.dkim) } : {}),
    ...policies?.config,
    ...workload.config?.(opts),
    ...JSON.parse(flags.config),
  };
}

async function runOnce(run) {
  const dir = mkdtempSync(join(tmpdir(), 'impulse-bench-'));
  removeOnExit(dir);
  const prefix = `r${run}x${Date.now().toString(36)}`;
  const rcptOf = spreadRecipient(opts.domains);
  const common = { size: opts.size, conns: opts.conns, rate: opts.rate };
  const zone = workload.zone(opts.domains);
  const policies = flags['mta-sts']
    ? await publishPolicies({ zone, domains: Array.from({ length: opts.domains }, (_, i) => `d${i}.test`) })
    : undefined;
  const dns = await startDns({ ...zone, ...policies?.zone });
  const sinkPort = await freePort('127.0.0.2');
  const sink = await startSink({
    hosts: workload.sinkHosts, port: sinkPort,
    tarpit: { hosts: workload.tarpitHosts, ms: opts.tarpitMs },
    rateLimit: { hosts: workload.rateLimitHosts, perSecond: opts.limitRate },
    latency: { hosts: workload.latencyHosts, greetMs: opts.greetMs, dataMs: opts.dataMs },
    silent: { hosts: workload.silentHosts },
  });
  let topology;
  let up;
  try {
    if (!workload.daemon) {
      const injected = await inject({ ...common, targets: [{ host: workload.sinkHosts[0], port: sinkPort }], n: opts.n, prefix, rcptOf });
      const { figures, summary } = await deliveryFigures(sink, prefix, injected, opts.timeoutMs);
      return { workload: name, run, n: opts.n, size: opts.size, conns: opts.conns, ...figures, sink_cpu_s: round(summary.cpuS, 2) };
    }

    // The daemon is measured as shipped: with node's flags as `npm start` gives them.
    const nodeArgs = [
      ...SHIPPED_NODE_ARGS,
      ...(flags['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${flags['cpu-prof']}`] : []),
      ...flags['node-args'].split(' ').filter(Boolean),
    ];
    topology = await startTopology(redis, { appendfsync: flags.appendfsync, dir: join(dir, 'redis'), log });
    const config = baseConfig(dir, dns, sinkPort, policies);
    up = await startDaemons({
      dir, nodes: opts.nodes, config, nodeArgs, log,
      redis: { ...topology.config, ...(waitReplicas !== undefined ? { wait_replicas: waitReplicas } : {}), ...config.redis },
    });
    await topology.attach(up.nodes[0].pid);
    log(`${up.describe()} accepting; ${await topology.describe()}`);
    const targets = up.nodes.map((node) => node.intake);
    // W4's suspend and resume reach every node through the cluster's state in Redis.
    const { configPath } = up.nodes[0].daemon;
    const extra = {};

    if (name === 'W3') {
      log(`queueing a backlog of ${opts.backlog} for ${SLOW_DOMAIN}`);
      const backlog = await inject({ ...common, targets, n: opts.backlog, prefix: `${prefix}s`, rcptOf: (seq) => `t${seq}@${SLOW_DOMAIN}`, rate: 0 });
      extra.backlog = backlog.accepted.length;
      extra.backlog_inject_msg_s = round(rateOf(backlog.accepted.length, backlog.t0, backlog.lastAck), 1);
      if (flags['settle-backlog']) {
        await allParked(topology.client, false);
        extra.backlog_parked_after_ms = Date.now() - backlog.lastAck;
      }
    }
    if (name === 'W4') {
      await admin(configPath, 'suspend', HELD_DOMAIN);
    }

    // Warm-up: V8 compiles the hot paths in a run's first seconds, which costs a cold run a fifth
    // more CPU there and a running daemon nothing. "With a cached policy" (--mta-sts) needs one
    // message per domain first, as a day of mail to a domain has fetched and kept its policy. Then
    // the idle_timeout (5 s) for the warm-up's connections to close, so the measured run opens
    // its own as W5 does.
    const warmN = Math.max(opts.warm, policies ? opts.domains : 0);
    if (warmN > 0) {
      const warm = await inject({ ...common, rate: 0, targets, n: warmN, prefix: `${prefix}w`, rcptOf });
      await sink.waitFor(`${prefix}w`, warm.accepted.length, opts.timeoutMs);
      log(`warm-up: ${warm.accepted.length} messages delivered${policies ? ', every MTA-STS policy cached' : ''}; waiting for their connections to close`);
      await new Promise((r) => setTimeout(r, WARM_CONNECTIONS_CLOSE_MS));
    }
    log(`injecting ${opts.n}`);
    const aof = await topology.watchAof();
    const before = await sample(up, topology);
    const rssBefore = up.rssKb();
    const injected = await inject({
      ...common, targets, n: opts.n, prefix,
      rcptOf: name === 'W4' ? (seq) => `u${seq}@${HELD_DOMAIN}` : rcptOf,
    });
    log(`injected ${injected.accepted.length} (${injected.failed} failed) in ${Date.now() - injected.t0} ms`);

    if (workload.silentHosts) {
      const held = await holdOpen({
        up, sink, expected: injected.accepted.length, rssBeforeKb: rssBefore, t0: injected.t0, holdMs: opts.holdMs, timeoutMs: opts.timeoutMs, log,
      });
      return {
        workload: name, run, n: opts.n, size: opts.size, conns: opts.conns, accepted: injected.accepted.length, inject_failed: injected.failed,
        ...held, warn_events: eventCounts(up.logs()),
      };
    }

    if (name === 'W4') {
      // What keeping the suspended backlog costs once every job has been parked (the consumer
      // works through the waiting list after intake ends): Redis work while it only sits there.
      await allParked(topology.client);
      // Each phase's own peak: V8 lets the heap grow with the rate of allocation, so one peak over
      // the whole run would not say whether intake, the held queue or the drain reached it.
      extra.rss_peak_inject_mb = round(up.peakRssKb() / 1024, 1);
      up.resetPeakRss();
      extra.all_parked_after_inject_ms = Date.now() - injected.lastAck;
      log(`all parked ${extra.all_parked_after_inject_ms} ms after injection ended`);
      const held = await sample(up, topology);
      await new Promise((r) => setTimeout(r, opts.holdMs));
      const queued = await sample(up, topology);
      const perMsg = (queued.usedMemory - before.usedMemory) / injected.accepted.length;
      extra.queued = injected.accepted.length;
      extra.rss_queued_mb = round(up.rssKb() / 1024, 1);
      extra.rss_per_queued_msg_b = round(((up.rssKb() - rssBefore) * 1024) / injected.accepted.length, 1);
      extra.redis_per_queued_msg_b = round(perMsg);
      extra.redis_overhead_per_msg_b = round(perMsg - opts.size);
      extra.redis_used_memory_queued_mb = round(queued.usedMemory / 2 ** 20, 1);
      extra.redis_cmds_per_s_held = round(rateOf(queued.commands - held.commands, held.at, queued.at));
      extra.daemon_cpu_pct_held = round((100 * (queued.daemonCpu - held.daemonCpu)) / ((queued.at - held.at) / 1000), 1);
      log(`queued: redis ${extra.redis_used_memory_queued_mb} MB, daemon rss ${extra.rss_queued_mb} MB; resuming`);
      extra.rss_peak_held_mb = round(up.peakRssKb() / 1024, 1);
      up.resetPeakRss();
      extra.resumed_at = Date.now();
      await admin(configPath, 'resume', HELD_DOMAIN);
    }

    const { figures, summary } = await deliveryFigures(sink, prefix, injected, name === 'W4' ? opts.drainMs : opts.timeoutMs);
    const after = await sample(up, topology);
    const aofBytes = aof.stop();
    if (flags.commandstats) logCommandstats(log, callsByCommand(before.masters, after.masters), summary.unique);
    if (flags.timeline) logTimeline(log, summary.timeline);
    const work = masterDelta(before.masters, after.masters);
    const perMsg = (v, digits = 1) => round(v / Math.max(1, summary.unique), digits);
    const per1000 = (cpu) => perMsg(cpu * 1000, 3);
    if (name === 'W3') {
      extra.slow_delivered = (await sink.summary(`${prefix}s`, [])).unique;
    }
    if (workload.rateLimitHosts) {
      // The limit holds per source address: with several bindings the MX takes R from each.
      const limit = opts.limitRate * Math.max(1, summary.sources.length);
      logCurve(log, summary.curve, limit);
      extra.limit_rate = opts.limitRate;
      extra.limit_sources = summary.sources.length;
      extra.rate_limited = summary.rateLimited;
      extra.deferred_pct = round((100 * summary.rateLimited) / Math.max(1, summary.deliveries + summary.rateLimited), 1);
      extra.steady_rate = summary.steadyRate === null ? null : round(summary.steadyRate / limit, 2);
    }
    if (name === 'W4') {
      extra.drain_msg_s = round(rateOf(summary.unique, extra.resumed_at, summary.lastArrival), 1);
      extra.rss_peak_drain_mb = round(up.peakRssKb() / 1024, 1);
      extra.first_after_resume_ms = summary.firstArrival === null ? null : summary.firstArrival - extra.resumed_at;
      delete extra.resumed_at;
      // Injection, hold and drain are separate phases here: one rate or latency over them means nothing.
      delete figures.e2e_msg_s;
      delete figures.latency_p50_ms;
      delete figures.latency_p99_ms;
    }
    return {
      workload: name,
      run,
      n: opts.n,
      size: opts.size,
      conns: opts.conns,
      appendfsync: flags.appendfsync,
      ...(opts.warm > 0 ? { warm: opts.warm } : {}),
      ...figures,
      ...extra,
      daemon_cpu_s_per_1k: per1000(after.daemonCpu - before.daemonCpu),
      ...(opts.nodes > 1 ? { node_cpu_s_per_1k: after.nodeCpu.map((cpu, i) => per1000(cpu - before.nodeCpu[i])) } : {}),
      redis_cpu_s_per_1k: per1000(work.cpu),
      // W4 starts the peak over at each phase (above): its run's peak is the largest of theirs.
      daemon_peak_rss_mb: Math.max(round(up.peakRssKb() / 1024, 1), extra.rss_peak_inject_mb ?? 0, extra.rss_peak_held_mb ?? 0),
      redis_used_memory_mb: round(after.usedMemory / 2 ** 20, 1),
      redis_peak_memory_mb: round(after.peakMemory / 2 ** 20, 1),
      redis,
      nodes: opts.nodes,
      ...(waitReplicas !== undefined ? { wait_replicas: waitReplicas } : {}),
      redis_cmds_per_msg: perMsg(work.commands),
      redis_aof_bytes_per_msg: perMsg(aofBytes, 0),
      redis_net_in_bytes_per_msg: perMsg(work.netIn, 0),
      ...(work.per.length > 1 ? { masters_cmds_share: work.per.map((m) => round(m.commands / Math.max(1, work.commands), 2)) } : {}),
      redis_forks: work.forks,
      redis_latest_fork_ms: round(after.forkUsec / 1000, 1),
      sink_cpu_s: round(summary.cpuS, 2),
      ...(policies ? { mta_sts: true, sts_policy_requests: policies.requests() } : {}),
      warn_events: eventCounts(up.logs()),
      // Last, as it is the longest: per 10 s, what the rate-limited MX accepted and deferred.
      ...(workload.rateLimitHosts ? { curve: summary.curve } : {}),
    };
  } finally {
    await up?.stop();
    await topology?.stop().catch((err) => log(`stopping redis: ${err.message}`));
    await sink.close();
    await dns.close();
    await policies?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

log(`${workload.about}; ${JSON.stringify(Object.fromEntries(Object.entries(opts).filter(([, v]) => Number.isFinite(v))))}`);
const results = [];
let failed = false;
for (let run = 1; run <= opts.runs; run++) {
  try {
    const result = await runOnce(run);
    results.push(result);
    console.log(JSON.stringify(result));
  } catch (err) {
    failed = true;
    log(`run ${run} failed: ${err.stack ?? err}`);
    break;
  }
}
if (results.length > 1) console.log(JSON.stringify(median(name, results)));
process.exit(failed ? 1 : 0);
