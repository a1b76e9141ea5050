// The composition root: builds every real dependency from the config, wires them, runs until
// a signal. No policy lives here.
import { dirname, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { Bindings } from './binding/registry.js';
import { AddressSet } from './core/cidr.js';
import { systemClock } from './core/clock.js';
import type { Config } from './config/schema.js';
import { OptionScopes, hostOptions, largestScopedValue } from './config/scopes.js';
import { AddressHealth } from './delivery/address-health.js';
import { smtpConnector } from './delivery/connector.js';
import { DomainRecords } from './delivery/domain-record.js';
import { HostConnections } from './delivery/host-connections.js';
import { Initiator } from './delivery/initiator.js';
import { isLocalAddress } from './delivery/local-address.js';
import { createResolver } from './dns/resolver.js';
import { loadPlugins } from './hooks/plugins.js';
import { HookRegistry } from './hooks/registry.js';
import { Intake } from './intake/server.js';
import { createLogger } from './observability/logger.js';
import { Consumer } from './queue/consumer.js';
import { type EmbeddedRedis, startEmbeddedRedis } from './queue/embedded-redis.js';
import { Enqueuer } from './queue/enqueue.js';
import { DELIVERY_QUEUE, type DeliveryJobData } from './queue/job.js';
import { type RedisTarget, connectRedis } from './queue/redis.js';
import { MessageStore } from './queue/store.js';
import { Scheduler } from './scheduler/scheduler.js';

/** Events kept in BullMQ's stream: nobody reads them, so keep it from growing. */
const EVENTS_MAX_LEN = 1000;
/** A job that throws unexpectedly is retried at this pace instead of being failed. */
const JOB_ERROR_RETRY_MS = 60_000;
/** Time past shutdown_timeout after which the daemon exits whatever is still closing. */
const HARD_STOP_GRACE_MS = 5_000;

/** A running daemon: what tests and the admin API reach, and how it stops. */
export interface Daemon {
  scheduler: Scheduler;
  /** Stops intake, parks held mail, waits for sessions in flight, closes Redis. */
  stop(): Promise<void>;
  /** Makes a stop in progress stop waiting for sessions in flight (retried after restart). */
  abandonSessions(): Promise<void>;
}

export async function startDaemon(config: Config, configPath: string, log = createLogger(config.log_level)): Promise<Daemon> {
  log.info({ event: 'starting', config: configPath, version: process.env.npm_package_version }, 'impulse starting');

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
  for (const [name, conn] of [['intake', intakeRedis], ['worker', queueRedis]] as const) {
    conn.on('error', (err: Error) => log.warn({ event: 'redis_error', connection: name, err: err.message }, 'redis connection error'));
  }

  const queue = new Queue<DeliveryJobData>(DELIVERY_QUEUE, {
    connection: intakeRedis,
    prefix,
    streams: { events: { maxLen: EVENTS_MAX_LEN } },
    defaultJobOptions: {
      removeOnComplete: true,
      removeOnFail: false,
      attempts: Number.MAX_SAFE_INTEGER,
      backoff: { type: 'fixed', delay: JOB_ERROR_RETRY_MS },
    },
  });
  const enqueuer = new Enqueuer(new MessageStore(intakeRedis, prefix), queue, () => largestScopedValue(config, 'message_expiration'));
  const hooks = new HookRegistry({ log, defaultTimeoutMs: config.hook_timeout });
  await loadPlugins(config.plugins, hooks, { log, baseDir: dirname(resolve(configPath)) });
  hooks.seal();

  const bindings = new Bindings(config);
  const scopes = new OptionScopes(config);
  const hosts = new HostConnections();
  const prohibited = new AddressSet(config.prohibited_hosts);
  const skipHosts = new Set(config.skip_hosts.map((h) => h.toLowerCase()));
  const initiator = new Initiator({
    resolver: createResolver({ servers: config.dns.servers, timeout: config.dns.timeout, tries: config.dns.tries }),
    connector: smtpConnector,
    health: new AddressHealth(),
    hosts,
    hooks,
    clock: systemClock,
    log,
    isLocalAddress,
    policy: (domain, binding) => {
      const o = scopes.get(binding.name, domain);
      return {
        port: o.remote_smtp_port,
        routes: config.routes,
        prohibited,
        skipHosts,
        hostFailureRetry: o.host_failure_retry,
        hostLimit: (host) => hostOptions(config, host)?.max_outbound_connections,
        connectTimeout: o.connect_timeout,
        greetingTimeout: o.greeting_timeout,
        dataTimeout: o.data_timeout,
        tls: o.tls,
      };
    },
  });
  const store = new MessageStore(queueRedis, prefix);
  const retryPolicy = (binding: string, domain: string) => {
    const o = scopes.get(binding, domain);
    return { retryInterval: o.retry_interval, maxRetryInterval: o.max_retry_interval, messageExpiration: o.message_expiration };
  };
  const scheduler = new Scheduler({
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
    bodyOf: async (qid) => (await store.get(qid))?.body,
    serverMaxConnections: config.server_max_outbound_connections,
    maxHeld: config.max_active_messages,
    migrate: config.migrate_connections_between_sibling_domains,
    suspendedRecheck: config.suspended_recheck_interval,
  });
  const consumer = new Consumer({
    connection: queueRedis,
    prefix,
    concurrency: config.max_active_messages,
    lockDuration: config.job_lock_timeout,
    store,
    scheduler,
    enqueuer,
    policy: retryPolicy,
    reportingMta: config.hostname,
    bindings,
    hooks,
    clock: systemClock,
    log,
  });
  const intake = new Intake({
    listeners: config.listen, hostname: config.hostname, enqueuer, clock: systemClock, log, closeTimeout: config.shutdown_timeout,
    bindings, bindingRules: config.binding_rules, defaultBinding: config.default_binding, hooks,
  });

  consumer.start();
  try {
    await intake.start();
  } catch (err) {
    log.fatal({ event: 'listen_failed', err: (err as Error).message }, 'cannot listen');
    await stop();
    throw err;
  }
  log.info({ event: 'ready', listeners: config.listen.map((l) => `${l.address}:${l.port}`) }, 'impulse ready');

  async function stop(): Promise<void> {
    await intake.close();
    await consumer.close();
    await hooks.idle();
    await queue.close();
    intakeRedis.disconnect();
    queueRedis.disconnect();
    await embedded?.stop();
  }
  return { scheduler, stop, abandonSessions: () => consumer.close(true) };
}

/** Runs the daemon until SIGTERM or SIGINT, then stops it within shutdown_timeout. */
export async function runDaemon(config: Config, configPath: string): Promise<void> {
  const log = createLogger(config.log_level);
  const daemon = await startDaemon(config, configPath, log);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ event: 'stopping', signal }, 'stopping: no new mail accepted, finishing sessions in flight');
      const deadline = setTimeout(() => {
        log.warn({ event: 'shutdown_timeout', after_ms: config.shutdown_timeout }, 'sessions still in flight; they will be retried after restart');
        void daemon.abandonSessions();
      }, config.shutdown_timeout);
      // Past this, something (an unreachable Redis) holds the close: every queued message is
      // already in Redis and jobs in flight are retried after restart, so exiting loses nothing.
      const hardDeadline = setTimeout(() => {
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
