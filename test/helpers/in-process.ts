// Runs the daemon inside the test process, for tests that query its in-process state API (the
// scheduler's view of domains) alongside the real Redis, DNS and sinks it talks to.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { type Daemon, startDaemon } from '../../src/main.js';
import type { LogRecord } from './daemon.js';
import { Condition } from './wait.js';

export interface InProcessDaemon {
  daemon: Daemon;
  logs: LogRecord[];
  waitForLog(pred: (rec: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  stop(): Promise<void>;
}

export async function startInProcess(config: object, dir: string): Promise<InProcessDaemon> {
  const path = join(dir, 'impulse-in-process.yaml');
  writeFileSync(path, stringify({ metrics: { listen: false }, ...config }));
  const loaded = loadConfig(path);
  if (!loaded.ok) throw new Error(`bad test config: ${loaded.errors.join('; ')}`);
  const logs: LogRecord[] = [];
  const changed = new Condition();
  const log = pino({ level: 'debug', formatters: { level: (label) => ({ level: label }) } }, {
    write(line: string) {
      logs.push(JSON.parse(line) as LogRecord);
      changed.notify();
    },
  });
  const daemon = await startDaemon(loaded, { log });
  return {
    daemon,
    logs,
    waitForLog: (pred, timeoutMs = 15000) => changed.until(() => logs.find(pred), timeoutMs,
      () => `no matching log record; last: ${logs.slice(-10).map((r) => JSON.stringify(r)).join('\n')}`),
    stop: () => daemon.stop(),
  };
}
