// A reload: the file is read and checked, its plugins loaded into a fresh hook registry, and only
// then is the new configuration swapped in everywhere; keys that need a restart keep their running
// values. Reloads run one at a time, so two SIGHUPs in a row never interleave their swaps.
import type { Logger } from 'pino';
import type { ReloadOutcome } from '../admin/context.js';
import { type LoadedConfig, loadConfig } from '../config/load.js';
import { type DkimKey, loadDkimKeys } from '../dkim/keys.js';
import { loadPlugins } from '../hooks/plugins.js';
import { HookRegistry } from '../hooks/registry.js';
import type { SystemdNotifier } from '../observability/systemd-notify.js';

/** Top-level keys a reload cannot apply to a running daemon: their old values stay until restart. */
const RESTART_KEYS = [
  'hostname', 'node_name', 'listen', 'redis', 'admin', 'metrics', 'dns', 'max_active_messages', 'job_lock_timeout', 'cluster_lease_ttl', 'shutdown_timeout', 'tls_ca_file',
  'webhooks', 'webhook_retention',
] as const;

interface ReloaderDeps {
  loaded: LoadedConfig;
  log: Logger;
  notifier?: SystemdNotifier | undefined;
  pluginContext: { log: Logger; baseDir: string };
  /** Swaps the checked configuration, its hook registry and its DKIM keys into every part of the daemon. */
  swap(next: LoadedConfig, fresh: { hooks: HookRegistry; dkimKeys: DkimKey[] }): void;
}

export class Reloader {
  private live: LoadedConfig;
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ReloaderDeps) {
    this.live = deps.loaded;
  }

  /** The configuration in force: runtime values and the document as written. */
  get current(): LoadedConfig {
    return this.live;
  }

  /** Re-reads the config file; an invalid one is refused and the running configuration kept. */
  reload(): Promise<ReloadOutcome> {
    const next = this.running.then(() => this.once());
    this.running = next.catch(() => {});
    return next;
  }

  private async once(): Promise<ReloadOutcome> {
    const { log, notifier } = this.deps;
    const path = this.live.path;
    await notifier?.reloading();
    try {
      const next = loadConfig(path);
      if (!next.ok) {
        log.error({ event: 'reload_refused', config: path, errors: next.errors }, 'new configuration is invalid; the running one stays');
        return { ok: false, errors: next.errors };
      }
      const dkim = loadDkimKeys(next.config.dkim);
      if (dkim.errors.length > 0) {
        log.error({ event: 'reload_refused', config: path, errors: dkim.errors }, 'DKIM keys failed to load; the running configuration stays');
        return { ok: false, errors: dkim.errors };
      }
      for (const warning of dkim.warnings) log.warn({ event: 'dkim_key_weak', warning }, warning);
      const hooks = new HookRegistry({ log, defaultTimeoutMs: next.config.hook_timeout });
      try {
        await loadPlugins(next.config.plugins, hooks, this.deps.pluginContext);
      } catch (err) {
        const errors = [(err as Error).message];
        log.error({ event: 'reload_refused', config: path, errors }, 'plugins failed to load; the running configuration stays');
        return { ok: false, errors };
      }
      const restartRequired = RESTART_KEYS.filter((k) => JSON.stringify(next.config[k]) !== JSON.stringify(this.live.config[k]));
      for (const k of RESTART_KEYS) {
        (next.config as Record<string, unknown>)[k] = this.live.config[k];
        (next.document as Record<string, unknown>)[k] = this.live.document[k];
      }
      this.live = next;
      this.deps.swap(next, { hooks, dkimKeys: dkim.keys });
      log.info({ event: 'reloaded', config: path, restart_required: restartRequired }, 'configuration reloaded');
      if (restartRequired.length > 0) {
        log.warn({ event: 'reload_needs_restart', keys: restartRequired }, 'some changed keys take effect only after a restart');
      }
      return { ok: true, reloaded: true, restart_required: restartRequired };
    } finally {
      await notifier?.ready();
    }
  }
}
