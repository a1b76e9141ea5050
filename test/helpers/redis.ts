// A redis-server of the test's own (free port, own temp dir), and a wait for the delivery queue to empty.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { DELIVERY_QUEUE } from '../../src/queue/job.js';
import { forgetDir, killOnExit, removeOnExit } from './cleanup.js';
import { freePort } from './ports.js';

export type TestRedis = {
  url: string;
  port: number;
  dir: string;
  /** Everything the current redis-server process wrote, for failure messages. */
  readonly output: string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
  /** SIGKILLs any running instance, then starts redis-server again on the same port and dir (replaying the AOF). */
  restart(): Promise<void>;
};

export type TestRedisOptions = {
  /** AOF fsync policy; everysec unless a test needs every acknowledged write on disk (always). */
  appendfsync?: 'always' | 'everysec' | 'no';
};

const READY = 'Ready to accept connections';
const START_TIMEOUT_MS = 10000;

type Running = { proc: ChildProcess; exited: Promise<void>; output: () => string };

/**
 * Starts redis-server with `args` and resolves once it printed `ready`; both pipes are drained for
 * the process's lifetime (a full pipe would block redis), and a failure carries its output.
 */
export function launchRedis(args: string[], port: number, ready = READY): Promise<Running> {
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(proc);
  let output = '';
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`redis-server on port ${port} not ready after ${START_TIMEOUT_MS} ms:\n${output}`));
    }, START_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(ready)) {
        clearTimeout(timer);
        resolve({ proc, exited, output: () => output });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on port ${port} exited (code ${code}, signal ${signal}) before ready:\n${output}`));
    });
  });
}

function launch(port: number, dir: string, appendfsync: string): Promise<Running> {
  return launchRedis([
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', appendfsync, '--daemonize', 'no',
  ], port);
}

async function halt(running: Running, signal: NodeJS.Signals): Promise<void> {
  if (running.proc.exitCode === null && running.proc.signalCode === null) running.proc.kill(signal);
  await running.exited;
}

export async function startRedis(opts: TestRedisOptions = {}): Promise<TestRedis> {
  const appendfsync = opts.appendfsync ?? 'everysec';
  const dir = mkdtempSync(join(tmpdir(), 'impulse-redis-'));
  removeOnExit(dir);
  let port = 0;
  let running: Running | undefined;
  // The free port can be taken between probe and bind; only that failure is worth a retry.
  for (let attempt = 0; !running; attempt++) {
    port = await freePort();
    try {
      running = await launch(port, dir, appendfsync);
    } catch (err) {
      if (attempt >= 3 || !String(err).includes('Address already in use')) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  let current: Running = running;

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    get output() {
      return current.output();
    },
    async stop() {
      await halt(current, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
      forgetDir(dir);
    },
    async kill9() {
      await halt(current, 'SIGKILL');
    },
    async restart() {
      await halt(current, 'SIGKILL');
      mkdirSync(dir, { recursive: true });
      removeOnExit(dir);
      current = await launch(port, dir, appendfsync);
    },
  };
}

/**
 * A redis-server of a test file's own with one client on it, started before the file's tests and
 * stopped after them: call at the file's top level, then the returned function inside tests.
 */
export function redisPerFile(): () => Redis {
  let server: TestRedis | undefined;
  let client: Redis | undefined;
  before(async () => {
    server = await startRedis();
    client = new Redis(server.url, { maxRetriesPerRequest: null });
  });
  after(async () => {
    client?.disconnect();
    await server?.stop();
  });
  return () => {
    if (!client) throw new Error('the Redis of this test file is not started yet: use it inside a test');
    return client;
  };
}

/** How often waitForQueueEmpty looks: nothing in Redis announces that the last job finished. */
const DRAIN_POLL_MS = 100;

/**
 * Resolves once the daemon's delivery queue in this Redis holds no job at all (waiting, active,
 * delayed): every message taken in has been delivered, failed, or never existed.
 */
export async function waitForQueueEmpty(url: string, timeoutMs: number, prefix = 'impulse'): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const key = (k: string) => `${prefix}:${DELIVERY_QUEUE}:${k}`;
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const [[, wait], [, active], [, delayed], [, prioritized]] = await redis.multi()
        .llen(key('wait')).llen(key('active')).zcard(key('delayed')).zcard(key('prioritized'))
        .exec() as Array<[unknown, number]>;
      if (wait + active + delayed + prioritized === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`delivery queue not empty after ${timeoutMs} ms: wait ${wait}, active ${active}, delayed ${delayed}, prioritized ${prioritized}`);
      }
      await delay(DRAIN_POLL_MS);
    }
  } finally {
    redis.disconnect();
  }
}
