// The composition root: builds every real dependency from the config, wires them, runs until
// a signal. No policy lives here.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Queue, isNotConnectionError } from 'bullmq';
import type { Logger } from 'pino';
import type { ReloadOutcome } from './admin/context.js';
import { AdminServer } from './admin/server.js';
import { Bindings } from './binding/registry.js';
import { AddressSet } from './core/cidr.js';
import { systemClock } from './core/clock.js';
import { withTimeout } from './core/timeout.js';
import { type LoadResult, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { OptionScopes, hostOptions, largestScopedValue } from './config/scopes.js';
import { AddressHealth } from './delivery/address-health.js';
import { smtpConnector } from './delivery/connector.js';
import { DomainRecords } from './delivery/domain-record.js';
import { HostConnections } from './delivery/host-connections.js';
import { Initiator } from './delivery/initiator.js';
import { isLocalAddress } from './delivery/local-address.js';
import { loadTrust } from './delivery/tls-trust.js';
import { createResolver } from './dns/resolver.js';
import { loadPlugins } from './hooks/plugins.js';
import { HookRegistry } from './hooks/registry.js';
import { Intake } from './intake/server.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { type StatusServer, startStatusServer } from './observability/status-server.js';
import { SystemdNotifier } from './observability/systemd-notify.js';
import { Consumer } from './queue/consumer.js';
import { type EmbeddedRedis, startEmbeddedRedis } from './queue/embedded-redis.js';
import { Enqueuer } from './queue/enqueue.js';
import { QueueInspector } from './queue/inspect.js';
import { DELIVERY_QUEUE, type DeliveryJobData } from './queue/job.js';
import { ParkedJobs } from './queue/parking.js';
import { returnOrphanedJobs } from './queue/reclaim.js';
import { type RedisTarget, connectRedis } from './queue/redis.js';
import { watchRedis } from './queue/redis-watch.js';
import { MessageStore } from './queue/store.js';
import { Scheduler } from './scheduler/scheduler.js';

/** Events kept in BullMQ's stream: nobody reads them, so keep it from growing. */
const EVENTS_MAX_LEN = 1000;
/** Time past shutdown_timeout after which the daemon exits whatever is still closing. */
const HARD_STOP_GRACE_MS = 5_000;
/** After a second stop signal: time to close Redis cleanly before exiting anyway. */
const IMMEDIATE_STOP_GRACE_MS = 2_000;
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Top-level keys a reload cannot apply to a running daemon: their old values stay until restart. */
const RESTART_KEYS = [
  'hostname', 'listen', 'redis', 'admin', 'metrics', 'dns', 'max_active_messages', 'job_lock_timeout', 'shutdown_timeout', 'tls_ca_file',
] as const;
/** A health check waits this long for Redis before calling it unreachable. */
const HEALTH_PING_TIMEOUT_MS = 1_000;

export type LoadedConfig = Extract<LoadResult, { ok: true }>;

/** A running daemon: what tests and the admin API reach, and how it stops. */
export interface Daemon {
  scheduler: Scheduler;
  /** Re-reads the config file; an invalid one is refused and the running config kept. */
  reload(): Promise<ReloadOutcome>;
  /** Stops intake, parks held mail, waits for sessions in flight, closes Redis. */
  stop(): Promise<void>;
  /** Makes a stop in progress stop waiting for sessions in flight (retried after restart). */
  abandonSessions(): Promise<void>;
}

export interface DaemonOptions {
  log?: Logger;
  notifier?: SystemdNotifier;
}

export async function startDaemon(loaded: LoadedConfig, opts: DaemonOptions = {}): Promise<Daemon> {
  const configPath = loaded.path;
  const config = loaded.config;
  const log = opts.log ?? createLogger(config.log_level);
  let live: LoadedConfig = loaded;
  log.info({ event: 'starting', config: configPath, version: VERSION }, 'impulse starting');
  // Before anything is started: a bad CA file stops the daemon with its name.
  const trust = loadTrust(config.tls_ca_file);

  let embedded: EmbeddedRedis | undefined;
  let target: RedisTarget;
  if (config.redis.url) {
    target = { url: config.redis.url };
  } else {
    embedded = await startEmbeddedRedis({ dir: config.redis.dir, binary: config.redis.binary, appendfsync: config.redis.appendfsync }, log);
    target = { path: embedded.socketPath };
  }
  const prefix = config.redis.prefix;
  const intakeRedis = connectRedis(target, 'intake', 'intake');
  const queueRedis = connectRedis(target, 'queue', 'worker');
  watchRedis(intakeRedis, 'intake', log);
  watchRedis(queueRedis, 'worker', log);

  const deliveryQueue = (connection: typeof intakeRedis) => {
    const q = new Queue<DeliveryJobData>(DELIVERY_QUEUE, {
      connection,
      prefix,
      streams: { events: { maxLen: EVENTS_MAX_LEN } },
    });
    // Without a listener BullMQ prints each reconnection attempt to stderr; watchRedis logs the outage once.
    q.on('error', (err) => {
      if (isNotConnectionError(err)) log.error({ event: 'queue_error', err: err.message }, 'queue error');
    });
    return q;
  };
  const queue = deliveryQueue(intakeRedis);
  const messageExpiration = () => largestScopedValue(live.config, 'message_expiration');
  const enqueuer = new Enqueuer(new MessageStore(intakeRedis, prefix, config.redis.compress_bodies), queue, messageExpiration);
  const pluginContext = { log, baseDir: dirname(resolve(configPath)) };
  const hooks = new HookRegistry({ log, defaultTimeoutMs: config.hook_timeout });
  await loadPlugins(config.plugins, hooks, pluginContext);
  hooks.seal();

  const bindings = new Bindings(config);
  const scopes = new OptionScopes(config);
  const hosts = new HostConnections();
  const health = new AddressHealth();
  let prohibited = new AddressSet(config.prohibited_hosts);
  let skipHosts = new Set(config.skip_hosts.map((h) => h.toLowerCase()));
  const redisPing = async () => {
    const t0 = performance.now();
    await intakeRedis.ping();
    return performance.now() - t0;
  };
  const inspector = new QueueInspector(intakeRedis, prefix, bindings);
  // Built before the parts it counts; its sources read them only when scraped.
  let scheduler: Scheduler | undefined;
  let intake: Intake | undefined;
  const metrics = new Metrics({
    queueCounts: () => inspector.counts(),
    held: () => scheduler?.heldCount ?? 0,
    inbound: () => intake?.sessions ?? 0,
    outboundByBinding: () => {
      const open = scheduler?.connectionsByBinding() ?? new Map<string, number>();
      for (const b of bindings.names()) if (!open.has(b)) open.set(b, 0);
      return open;
    },
    redisPing,
  });
  const initiator = new Initiator({
    resolver: createResolver({ servers: config.dns.servers, timeout: config.dns.timeout, tries: config.dns.tries }),
    connector: smtpConnector(trust),
    health,
    hosts,
    hooks,
    clock: systemClock,
    log,
    isLocalAddress,
    policy: (domain, binding) => {
      const o = scopes.get(binding.name, domain);
      return {
        port: o.remote_smtp_port,
        routes: live.config.routes,
        prohibited,
        skipHosts,
        hostFailureRetry: o.host_failure_retry,
        hostLimit: (host) => hostOptions(live.config, host)?.max_outbound_connections,
        connectTimeout: o.connect_timeout,
        greetingTimeout: o.greeting_timeout,
        dataTimeout: o.data_timeout,
        tls: o.tls,
        tlsVerify: o.tls_verify,
        tlsIfavailableFallback: o.tls_ifavailable_fallback,
      };
    },
  });
  const store = new MessageStore(queueRedis, prefix, config.redis.compress_bodies);
  // DSNs are queued in the middle of an attempt: like the attempt's other writes they wait out a
  // Redis outage, where intake's fail fast and would make the attempt be made again.
  const dsnQueue = deliveryQueue(queueRedis);
  const dsnEnqueuer = new Enqueuer(store, dsnQueue, messageExpiration);
  const parking = new ParkedJobs(queueRedis, dsnQueue, prefix);
  const retryPolicy = (binding: string, domain: string) => {
    const o = scopes.get(binding, domain);
    return { retryInterval: o.retry_interval, maxRetryInterval: o.max_retry_interval, messageExpiration: o.message_expiration };
  };
  const schedulerSettings = (c: Config) => ({
    serverMaxConnections: c.server_max_outbound_connections,
    migrate: c.migrate_connections_between_sibling_domains,
    suspendedRecheck: c.suspended_recheck_interval,
  });
  scheduler = new Scheduler({
    initiator,
    records: new DomainRecords(),
    hosts,
    bindings,
    hooks,
    clock: systemClock,
    log,
    options: (binding, domain) => scopes.get(binding, domain),
    scopeOf: (binding, domain, key) => scopes.scopeOf(binding, domain, key),
    retryPolicy,
    bodyOf: (qid) => store.get(qid),
    promoteParked: (pair, count) => parking.promote(pair, count),
    maxHeld: config.max_active_messages,
    observer: metrics,
    ...schedulerSettings(config),
  });
  const consumer = new Consumer({
    connection: queueRedis,
    prefix,
    concurrency: config.max_active_messages,
    lockDuration: config.job_lock_timeout,
    store,
    parking,
    scheduler,
    enqueuer: dsnEnqueuer,
    policy: retryPolicy,
    reportingMta: config.hostname,
    bindings,
    hooks,
    clock: systemClock,
    log,
    historyRetention: () => live.config.message_history_retention,
    counter: metrics,
  });
  intake = new Intake({
    listeners: config.listen, hostname: config.hostname, enqueuer, clock: systemClock, log, closeTimeout: config.shutdown_timeout,
    bindings, bindingRules: config.binding_rules, defaultBinding: config.default_binding, hooks, counter: metrics,
  });
  const startedAt = systemClock.now();

  // Reloads run one at a time: two SIGHUPs in a row must not interleave their swaps.
  let reloading: Promise<unknown> = Promise.resolve();
  function reload(): Promise<ReloadOutcome> {
    const next = reloading.then(applyReload);
    reloading = next.catch(() => {});
    return next;
  }

  async function applyReload(): Promise<ReloadOutcome> {
    await opts.notifier?.reloading();
    try {
      const next = loadConfig(configPath);
      if (!next.ok) {
        log.error({ event: 'reload_refused', config: configPath, errors: next.errors }, 'new configuration is invalid; the running one stays');
        return { ok: false, errors: next.errors };
      }
      const fresh = new HookRegistry({ log, defaultTimeoutMs: next.config.hook_timeout });
      try {
        await loadPlugins(next.config.plugins, fresh, pluginContext);
      } catch (err) {
        const errors = [(err as Error).message];
        log.error({ event: 'reload_refused', config: configPath, errors }, 'plugins failed to load; the running configuration stays');
        return { ok: false, errors };
      }
      const restartRequired = RESTART_KEYS.filter((k) => JSON.stringify(next.config[k]) !== JSON.stringify(live.config[k]));
      for (const k of RESTART_KEYS) {
        (next.config as Record<string, unknown>)[k] = live.config[k];
        (next.document as Record<string, unknown>)[k] = live.document[k];
      }
      live = next;
      hooks.adopt(fresh);
      bindings.reconfigure(next.config);
      scopes.reconfigure(next.config);
      prohibited = new AddressSet(next.config.prohibited_hosts);
      skipHosts = new Set(next.config.skip_hosts.map((h) => h.toLowerCase()));
      intake!.reconfigure({ bindingRules: next.config.binding_rules, defaultBinding: next.config.default_binding });
      scheduler!.reconfigure(schedulerSettings(next.config));
      log.level = next.config.log_level;
      log.info({ event: 'reloaded', config: configPath, restart_required: restartRequired }, 'configuration reloaded');
      if (restartRequired.length > 0) {
        log.warn({ event: 'reload_needs_restart', keys: restartRequired }, 'some changed keys take effect only after a restart');
      }
      return { ok: true, reloaded: true, restart_required: restartRequired };
    } finally {
      await opts.notifier?.ready();
    }
  }

  const admin = new AdminServer({
    scheduler, consumer, queue, inspector, store, health, bindings, counts: metrics,
    inbound: () => intake!.sessions,
    config: () => ({ config: live.config, document: live.document }),
    reload, clock: systemClock, startedAt, version: VERSION,
  }, config.admin, log);
  let status: StatusServer | undefined;

  if (embedded) await returnOrphanedJobs(queue, log);
  consumer.start();
  scheduler.adoptParked(await parking.pairs());
  try {
    await intake.start();
    await admin.start();
    if (config.metrics.listen !== false) {
      status = await startStatusServer({
        listen: config.metrics.listen,
        registry: metrics.registry,
        health: async () => {
          try {
            await withTimeout(redisPing(), HEALTH_PING_TIMEOUT_MS, () => {
              throw new Error(`Redis PING timed out after ${HEALTH_PING_TIMEOUT_MS} ms`);
            });
            return { ok: true, checks: { redis: 'ok' } };
          } catch (err) {
            return { ok: false, checks: { redis: `unreachable: ${(err as Error).message}` } };
          }
        },
        ready: () => intake!.ready,
        log,
      });
    }
  } catch (err) {
    log.fatal({ event: 'listen_failed', err: (err as Error).message }, 'cannot listen');
    await stop();
    throw err;
  }
  log.info({
    event: 'ready', listeners: config.listen.map((l) => `${l.address}:${l.port}`), admin: admin.where,
    ...(status ? { metrics: `${status.host}:${status.port}` } : {}),
  }, 'impulse ready');

  async function stop(): Promise<void> {
    await intake!.close();
    await admin.close();
    await consumer.close();
    await hooks.idle();
    await status?.close();
    metrics.close();
    await queue.close();
    await dsnQueue.close();
    intakeRedis.disconnect();
    queueRedis.disconnect();
    await embedded?.stop();
  }
  return { scheduler, reload, stop, abandonSessions: () => consumer.close(true) };
}

/**
 * Runs the daemon until SIGTERM or SIGINT, then stops it within shutdown_timeout; a second signal
 * stops it at once. SIGHUP reloads the config.
 */
export async function runDaemon(loaded: LoadedConfig): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log_level);
  const notifier = new SystemdNotifier({ log });
  const daemon = await startDaemon(loaded, { log, notifier });
  await notifier.ready('accepting mail');
  process.on('SIGHUP', () => {
    log.info({ event: 'reloading', signal: 'SIGHUP' }, 'reloading the configuration');
    void daemon.reload();
  });
  await new Promise<void>((resolve) => {
    let stopping = false;
    let hardDeadline: NodeJS.Timeout | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // Held mail is parked as the stop began; sessions in flight are abandoned and their
        // messages come back after job_lock_timeout. Nothing acknowledged is lost.
        log.warn({ event: 'stopping_now', signal }, 'second signal: abandoning sessions in flight');
        void daemon.abandonSessions();
        clearTimeout(hardDeadline);
        hardDeadline = setTimeout(() => {
          log.error({ event: 'shutdown_forced', signal }, 'exiting without waiting further');
          resolve();
        }, IMMEDIATE_STOP_GRACE_MS);
        return;
      }
      stopping = true;
      void notifier.stopping();
      log.info({ event: 'stopping', signal }, 'stopping: no new mail accepted, finishing sessions in flight');
      const deadline = setTimeout(() => {
        log.warn({ event: 'shutdown_timeout', after_ms: config.shutdown_timeout }, 'sessions still in flight; they will be retried after restart');
        void daemon.abandonSessions();
      }, config.shutdown_timeout);
      // Past this, something (an unreachable Redis) holds the close: every queued message is
      // already in Redis and jobs in flight are retried after restart, so exiting loses nothing.
      hardDeadline = setTimeout(() => {
        log.error({ event: 'shutdown_forced', after_ms: config.shutdown_timeout + HARD_STOP_GRACE_MS }, 'shutdown did not complete; exiting');
        resolve();
      }, config.shutdown_timeout + HARD_STOP_GRACE_MS);
      daemon.stop().then(() => {
        clearTimeout(deadline);
        clearTimeout(hardDeadline);
        log.info({ event: 'stopped' }, 'impulse stopped');
        resolve();
      }, (err: Error) => {
        log.error({ event: 'stop_error', err: err.message }, 'error while stopping');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
