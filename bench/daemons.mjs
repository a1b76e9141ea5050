// The daemons of one run, one or `--nodes` N sharing its Redis as a cluster's nodes do, each
// started as an operator starts it; and what the runner reads of them (CPU, memory, warnings).
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { startDaemon } from '../dist/test/helpers/daemon.js';
import { makeDkimKey } from '../dist/test/helpers/dkim.js';
import { freePort } from '../dist/test/helpers/ports.js';
import { INJECT_FROM_DOMAIN } from './inject.mjs';
import { cpuSeconds, peakRssKb, resetPeakRss, rssKb } from './proc.mjs';

// At log_level warn the 'ready' record (info) is not printed: the intake accepting connections is
// the sign, as it starts listening just before 'ready'.
async function waitForIntake(port, proc, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error('daemon exited during startup');
    const open = await new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`intake 127.0.0.1:${port} not accepting after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * What every bench daemon runs with, whoever starts it: production defaults but for names, quiet
 * logs, no metrics port (daemons run side by side), loopback MX hosts allowed, the run's DNS
 * server and sink port, and a short shutdown.
 */
export function benchDaemonConfig(dnsServer, sinkPort) {
  return {
    hostname: 'impulse.bench.test',
    ehlo_hostname: 'out.bench.test',
    log_level: 'warn',
    dns: { servers: [dnsServer] },
    metrics: { listen: false },
    prohibited_hosts: [],
    remote_smtp_port: sinkPort,
    shutdown_timeout: '5s',
  };
}

/** The daemon's `dkim:` entries: fresh keys for the injector's From: domain, written into `dir`. */
export function dkimKeys(dir, which) {
  const types = which === 'both' ? ['rsa', 'ed25519'] : [which];
  return types.map((type) => {
    const k = makeDkimKey(INJECT_FROM_DOMAIN, `bench-${type}`, type, 2048, dir);
    return { domain: k.domain, selector: k.selector, key_file: k.file };
  });
}

/**
 * Starts `nodes` daemons with `config` and the `redis` section, each with its own intake port,
 * admin socket and directory under `dir`. Resolves once every intake accepts connections.
 */
export async function startDaemons({ dir, nodes, redis, config, nodeArgs, log }) {
  const started = [];
  const up = {
    nodes: started,
    stop: () => stopDaemons(started, log),
    /** CPU of each daemon and their sum, for the difference between two moments. */
    cpu() {
      const nodeCpu = started.map((n) => cpuSeconds(n.pid));
      return { nodeCpu, daemonCpu: nodeCpu.reduce((a, b) => a + b, 0) };
    },
    rssKb: () => started.reduce((kb, n) => kb + rssKb(n.pid), 0),
    peakRssKb: () => Math.max(...started.map((n) => peakRssKb(n.pid))),
    resetPeakRss: () => started.forEach((n) => resetPeakRss(n.pid)),
    logs: () => started.flatMap((n) => n.daemon.logs),
    describe: () => started.map((n) => `daemon ${n.pid} on :${n.intake.port}`).join(', '),
  };
  try {
    await Promise.all(Array.from({ length: nodes }, async (_, i) => {
      const nodeDir = join(dir, `node-${i}`);
      mkdirSync(nodeDir, { recursive: true });
      const port = await freePort('127.0.0.1');
      const daemon = await startDaemon({
        ...config,
        // Nodes on one Redis refuse a node_name another live one holds, and all default to the hostname.
        ...(nodes > 1 ? { node_name: `bench-${i}` } : {}),
        redis,
        listen: [{ address: '127.0.0.1', port }],
        admin: { socket: join(nodeDir, 'admin.sock') },
      }, { dir: nodeDir, waitReady: false, nodeArgs });
      started[i] = { daemon, pid: daemon.proc.pid, intake: { host: '127.0.0.1', port } };
      await waitForIntake(port, daemon.proc);
    }));
    return up;
  } catch (err) {
    await up.stop();
    throw err;
  }
}

async function stopDaemons(started, log) {
  await Promise.all(started.filter(Boolean).map(async ({ daemon }) => {
    if (daemon.proc.exitCode !== null || daemon.proc.signalCode !== null) return;
    const stopAt = Date.now();
    const code = await daemon.stop('SIGTERM', 120_000).catch((err) => (log(err.message), null));
    log(`daemon ${daemon.proc.pid} stopped (exit ${code}) in ${Date.now() - stopAt} ms`);
  }));
}
