// The composition root: builds every real dependency from the config, wires them, runs until
// a signal. No policy lives here.
import { Queue } from 'bullmq';
import { AddressSet } from './core/cidr.js';
import { systemClock } from './core/clock.js';
import type { Config } from './config/schema.js';
import { Deliverer } from './delivery/deliverer.js';
import { createResolver } from './dns/resolver.js';
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

export async function runDaemon(config: Config, configPath: string): Promise<void> {
  const log = createLogger(config.log_level);
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
  const enqueuer = new Enqueuer(new MessageStore(intakeRedis, prefix), queue, () => config.message_expiration);
  const deliverer = new Deliverer({
    resolver: createResolver({ servers: config.dns.servers, timeout: config.dns.timeout, tries: config.dns.tries }),
    routes: config.routes,
    remotePort: config.remote_smtp_port,
    prohibited: new AddressSet(config.prohibited_hosts),
    session: {
      ehloHostname: config.ehlo_hostname,
      connectTimeout: config.connect_timeout,
      greetingTimeout: config.greeting_timeout,
      dataTimeout: config.data_timeout,
      tls: config.tls,
    },
  });
  const consumer = new Consumer({
    connection: queueRedis,
    prefix,
    concurrency: config.delivery_concurrency,
    store: new MessageStore(queueRedis, prefix),
    scheduler: new Scheduler(deliverer),
    enqueuer,
    policy: () => ({ retryInterval: config.retry_interval, maxRetryInterval: config.max_retry_interval, messageExpiration: config.message_expiration }),
    reportingMta: config.hostname,
    clock: systemClock,
    log,
  });
  const intake = new Intake({
    listeners: config.listen, hostname: config.hostname, enqueuer, clock: systemClock, log, closeTimeout: config.shutdown_timeout,
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

  async function stop(force = false): Promise<void> {
    await intake.close();
    await consumer.close(force);
    await queue.close();
    intakeRedis.disconnect();
    queueRedis.disconnect();
    await embedded?.stop();
  }

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ event: 'stopping', signal }, 'stopping: no new mail accepted, finishing sessions in flight');
      const deadline = setTimeout(() => {
        log.warn({ event: 'shutdown_timeout', after_ms: config.shutdown_timeout }, 'sessions still in flight; they will be retried after restart');
        void consumer.close(true);
      }, config.shutdown_timeout);
      stop().then(() => {
        clearTimeout(deadline);
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
