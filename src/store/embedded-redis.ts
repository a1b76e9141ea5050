// A private redis-server under the daemon's data directory: append-only file on, reachable only
// through a Unix socket in that directory, started before the daemon needs it and stopped after.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Under systemd's NotifyAccess=all the unit trusts every process it runs: Redis must not speak for the daemon. */
function childEnv(): NodeJS.ProcessEnv {
  const { NOTIFY_SOCKET: _notify, ...env } = process.env;
  return env;
}

interface EmbeddedRedisOptions {
  dir: string;
  binary: string;
  appendfsync: 'always' | 'everysec' | 'no';
  startTimeoutMs?: number;
}

export interface EmbeddedRedis {
  socketPath: string;
  stop(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * One daemon per data directory: a second one would share (and its leftover check would stop)
 * the first one's redis-server. The lock is a pid file checked for a live process.
 */
function lockDirectory(dir: string): void {
  const lockFile = join(dir, 'impulse.pid');
  try {
    const owner = Number(readFileSync(lockFile, 'utf8').trim());
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
      throw new Error(`another impulse process (pid ${owner}) is using ${dir}; stop it or set a different redis.dir`);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  writeFileSync(lockFile, `${process.pid}\n`);
}

/** A redis-server left running by a daemon that was killed would share our AOF: stop it first. */
async function stopLeftover(pidFile: string, log: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
  let comm = '';
  try {
    comm = readFileSync(`/proc/${pid}/comm`, 'utf8');
  } catch {
    return;
  }
  if (!comm.includes('redis')) return;
  log.warn({ event: 'embedded_redis_leftover', redis_pid: pid }, 'stopping a redis-server left running on this data directory');
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 600 && alive(pid); i++) await sleep(50);
  if (alive(pid)) throw new Error(`redis-server pid ${pid} on ${pidFile} did not stop`);
}

export async function startEmbeddedRedis(opts: EmbeddedRedisOptions, log: Logger): Promise<EmbeddedRedis> {
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const socketPath = join(opts.dir, 'redis.sock');
  const pidFile = join(opts.dir, 'redis.pid');
  lockDirectory(opts.dir);
  await stopLeftover(pidFile, log);

  const args = [
    '--port', '0', '--unixsocket', socketPath, '--unixsocketperm', '700',
    '--dir', opts.dir, '--pidfile', pidFile, '--daemonize', 'no',
    '--appendonly', 'yes', '--appendfsync', opts.appendfsync, '--save', '',
    '--maxmemory-policy', 'noeviction', '--logfile', '',
    // The AOF's periodic rewrite saves the whole dataset: with a large queue that is a child
    // process writing hundreds of MB beside delivery. A queue that large has its bodies mostly
    // Brotli-compressed already (redis.compress_bodies_above), so LZF gains them little and cost
    // two thirds of the rewrite's time (2.8 s against 1.0 s for 400 MB of base64-like text).
    '--rdbcompression', 'no',
    // A job's hash (data, opts, timestamps: a few hundred bytes each) then stays one compact
    // listpack instead of a table of separately allocated fields: about 330 bytes less per job.
    '--hash-max-listpack-value', '512',
  ];
  let output = '';
  const child: ChildProcess = spawn(opts.binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<string>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      resolve(err.code === 'ENOENT'
        ? `redis-server binary "${opts.binary}" not found: install Redis (Debian: apt-get install redis-server), set redis.binary, or set redis.url`
        : `cannot start ${opts.binary}: ${err.message}`));
    child.once('exit', (code, signal) => resolve(`redis-server exited (code ${code}, signal ${signal}): ${output.trim()}`));
  });

  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  let failure: string | undefined;
  void exited.then((why) => {
    failure = why;
  });
  while (!failure) {
    const probe = new Redis({ path: socketPath, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    try {
      await probe.connect();
      // LOADING replies arrive while the AOF is replayed; only a PONG means it can take writes.
      if ((await probe.ping()) === 'PONG') {
        probe.disconnect();
        break;
      }
    } catch {
      probe.disconnect();
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`embedded redis-server did not answer within ${opts.startTimeoutMs ?? 60_000} ms: ${output.trim()}`);
    }
    await sleep(25);
  }
  if (failure) throw new Error(failure);
  log.info({ event: 'embedded_redis_started', redis_pid: child.pid, dir: opts.dir, appendfsync: opts.appendfsync }, 'embedded redis-server ready');

  return {
    socketPath,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // SIGTERM makes redis-server fsync the AOF and exit cleanly.
      child.kill('SIGTERM');
      await exited;
      rmSync(join(opts.dir, 'impulse.pid'), { force: true });
    },
  };
}
