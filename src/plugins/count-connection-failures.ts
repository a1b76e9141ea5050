// Example plugin: keeps running totals of failed outbound connections per CONN_* flag and logs them.
import { flagNames } from '../delivery/flags.js';
import type { PluginApi } from '../hooks/plugins.js';

interface Options {
  logEvery: number;
}

// A typo in the configuration should stop the daemon, not quietly log at the default rate.
function parseOptions(raw: unknown): Options {
  if (raw === undefined || raw === null) return { logEvery: 1 };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error('options must be a mapping');
  for (const key of Object.keys(raw)) {
    if (key !== 'log_every') throw new Error(`unknown option ${key}`);
  }
  const logEvery = (raw as { log_every?: unknown }).log_every ?? 1;
  if (typeof logEvery !== 'number' || !Number.isInteger(logEvery) || logEvery < 1) {
    throw new Error(`log_every must be a whole number of at least 1, got ${JSON.stringify(logEvery)}`);
  }
  return { logEvery };
}

export function register(api: PluginApi): void {
  const { logEvery } = parseOptions(api.options);
  // Per registration, not per module: two entries of this plugin in the configuration count apart.
  const counts = new Map<string, number>();
  let failures = 0;
  // Last, so that counting never delays plugins that act on the failure.
  api.hooks.registerLast('log_client_connection_failure', (_closure, _addr, err, domain, queue) => {
    const flags = flagNames(err);
    for (const flag of flags) counts.set(flag, (counts.get(flag) ?? 0) + 1);
    failures += 1;
    if (failures % logEvery !== 0) return;
    api.log.info(
      { event: 'connection_failure_count', flags, domain: domain.domain, binding: queue.binding, counts: Object.fromEntries(counts) },
      `connection failure to ${domain.domain}: ${flags.join('|')}`,
    );
  });
}
