// The composition root: builds every real dependency from the configuration, wires them, starts
// them in order and stops them in reverse. Reload and signals live in daemon/.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ReloadOutcome } from './admin/context.js';
import { AdminServer } from './admin/server.js';
import { Bindings } from './binding/registry.js';
import { ClusterBus } from './cluster/bus.js';
import { ClusterGate } from './cluster/gate.js';
import { ClusterThrottles } from './cluster/gcra.js';
import { ClusterLeases } from './cluster/leases.js';
import { localNode } from './cluster/local.js';
import { NodeRegistry } from './cluster/nodes.js';
import { ClusterState } from './cluster/state.js';
import { BounceClassifier } from './bounce/classify.js';
import { systemClock } from './core/clock.js';
import { DeliveryOptions, layered } from './config/delivery-options.js';
import type { LoadedConfig } from './config/load.js';
import { superviseSignals } from './daemon/lifecycle.js';
import { Reloader } from './daemon/reload.js';
import { AddressHealth } from './delivery/address-health.js';
import { smtpConnector } from './delivery/connector.js';
import { HostConnections } from './delivery/host-connections.js';
import { Initiator } from './delivery/initiator.js';
import { DestinationPolicies } from './delivery/destination-tls.js';
import { isLocalAddress } from './delivery/local-address.js';
import { loadTrust } from './delivery/tls-trust.js';
import { BodyCompression, fixedCompression } from './store/body-compression.js';
import { loadDkimKeys } from './dkim/keys.js';
import { DkimSigner } from './dkim/signer.js';
import { createDnsClient } from './dns/client.js';
import { createResolver } from './dns/resolver.js';
import { loadPlugins } from './hooks/plugins.js';
import { HookRegistry } from './hooks/registry.js';
import { Intake } from './intake/server.js';
import { RedisPolicyCache } from './mta-sts/cache.js';
import { StsDiscovery } from './mta-sts/discovery.js';
import { httpsPolicyFetcher } from './mta-sts/fetch.js';
import { redisHealth } from './observability/health.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { PairRates } from './observability/pair-rates.js';
import { WebhookMetrics } from './observability/webhook-metrics.js';
import { type StatusServer, startStatusServer } from './observability/status-server.js';
import { SystemdNotifier } from './observability/systemd-notify.js';
import { Outcomes } from './outcome/conclude.js';
import { retryPolicyOf } from './outcome/retry.js';
import { Consumer } from './queue/consumer.js';
import { Enqueuer } from './queue/enqueue.js';
import { QueueInspector } from './queue/inspect.js';
import { domainOf } from './queue/job.js';
import { RedisParkedIndex } from './queue/parked-index.js';
import { returnOrphanedJobs } from './queue/reclaim.js';
import { ShardLayout, openShards } from './queue/shards.js';
import { Scheduler } from './scheduler/scheduler.js';
import { AdaptiveLimits, adaptiveBounds } from './shaping/adaptive.js';
import type { AdaptiveBounds } from './shaping/adaptive-policy.js';
import type { ObservedReply } from './shaping/rule.js';
import { Shaper } from './shaping/shaper.js';
import { RedisShapingStore } from './shaping/store.js';
import { type EmbeddedRedis, startEmbeddedRedis } from './store/embedded-redis.js';
import { ReplicaWait } from './store/replica-wait.js';
import { type RedisTarget, connectRedis, externalTarget } from './store/redis.js';
import { watchRedis } from './store/redis-watch.js';
import { Webhooks } from './webhooks/webhooks.js';

/** An MTA-STS policy fetch, DNS to last byte (RFC 8461 §3.3 asks for a timeout, leaving its length open). */
const STS_FETCH_TIMEOUT_MS = 30_000;
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

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

interface DaemonOptions {
  log?: Logger;
  notifier?: SystemdNotifier;
}

export async function startDaemon(loaded: LoadedConfig, opts: DaemonOptions = {}): Promise<Daemon> {
  const config = loaded.config;
  const log = opts.log ?? createLogger(config.log_level);
  log.info({ event: 'starting', config: loaded.path, version: VERSION }, 'impulse starting');
  // Before anything is started: a bad CA file stops the daemon with its name.
  const trust = loadTrust(config.tls_ca_file);
  const dkimKeys = loadDkimKeys(config.dkim);
  if (dkimKeys.errors.length > 0) throw new Error(`DKIM keys cannot be used: ${dkimKeys.errors.join('; ')}`);
  for (const warning of dkimKeys.warnings) log.warn({ event: 'dkim_key_weak', warning }, warning);

  let embedded: EmbeddedRedis | undefined;
  let target = externalTarget(config.redis);
  if (!target) {
    embedded = await startEmbeddedRedis({ dir: config.redis.dir, binary: config.redis.binary, appendfsync: config.redis.appendfsync }, log);
    target = { path: embedded.socketPath } satisfies RedisTarget;
  }
  const { prefix, wait_replicas: waitReplicas, wait_timeout: waitTimeout } = config.redis;
  const layout = new ShardLayout(prefix, config.redis.shards, 'cluster' in target);
  const intakeRedis = connectRedis(target, 'intake', 'intake', waitReplicas ? waitTimeout : 0);
  const queueRedis = connectRedis(target, 'queue', 'worker');
  // Pub/sub takes a connection of its own: a subscribed connection runs no other command.
  const subscriber = connectRedis(target, 'queue', 'subscriber');
  watchRedis(intakeRedis, 'intake', log);
  watchRedis(queueRedis, 'worker', log);

  // Built before the scheduler whose MX knowledge its site-scoped actions need; asked only once one is in force.
  let scheduler: Scheduler | undefined;
  const bus = new ClusterBus({ redis: queueRedis, subscriber, prefix, node: config.node_name, log });
  const leases = new ClusterLeases({ redis: queueRedis, subscriber, prefix, node: config.node_name, ttlMs: config.cluster_lease_ttl, log });
  // Built once the parts it acts on exist; the shaper and the scheduler only tell it of changes made here.
  let cluster: ClusterState | undefined;
  // Built once the metrics it counts into exist; the shaper hands it records only once started.
  let webhooks: Webhooks | undefined;
  const shaper = new Shaper({
    rules: config.shaping_rules, store: new RedisShapingStore(queueRedis, prefix), clock: systemClock, log,
    counter: { shapingAction: (rule, action, scope) => metrics.shapingAction(rule, action, scope) },
    peers: { shaped: (change, action) => cluster?.shaped(change, action) },
    feed: { wants: (event) => webhooks?.feed.wants(event) ?? false, publish: (record) => webhooks?.feed.publish(record) },
  });
  const bounceClasses = new BounceClassifier(config.bounce_class_rules);
  const adaptive: AdaptiveLimits = new AdaptiveLimits({
    bounds: (binding, domain): AdaptiveBounds | undefined => adaptiveBounds(options.configured(binding, domain).adaptive), bounceClass: (r) => bounceClasses.classify(r), clock: systemClock, log,
  });
  // Shaping's set actions are the most specific layer, over adaptive limits.
  const options: DeliveryOptions = new DeliveryOptions(config, layered(
    (binding, domain, configured) => adaptive.overlay(binding, domain, configured.adaptive),
    (binding, domain) => shaper.overlay(binding, domain, (d) => scheduler?.mxHostsOf(d) ?? []),
  ));
  const replies = { observe: (o: ObservedReply) => { shaper.observe(o); adaptive.observe(o); } };
  const { compress_bodies: compressBodies, compress_bodies_above: compressAbove } = config.redis;
  const compression = compressBodies && compressAbove > 0 ? new BodyCompression(queueRedis, compressAbove, log) : undefined;
  const intakeShards = openShards(intakeRedis, layout, compression ?? fixedCompression(compressBodies), log);
  const replicas = waitReplicas ? new ReplicaWait(intakeRedis, waitReplicas, waitTimeout!) : undefined;
  const enqueuer = new Enqueuer(intakeShards, () => options.longestExpiration(), replicas);
  const pluginContext = { log, baseDir: dirname(resolve(loaded.path)) };
  const hooks = new HookRegistry({ log, defaultTimeoutMs: config.hook_timeout });
  await loadPlugins(config.plugins, hooks, pluginContext);
  hooks.seal();

  const bindings = new Bindings(config);
  const hosts = new HostConnections();
  const health = new AddressHealth();
  const redisPing = async () => {
    const t0 = performance.now();
    await intakeRedis.ping();
    return performance.now() - t0;
  };
  const inspector = new QueueInspector(intakeRedis, layout, bindings);
  // Built before the parts it counts; its sources read them only when scraped.
  let intake: Intake | undefined;
  let consumer: Consumer | undefined;
  const metrics = new Metrics({
    queueCounts: () => inspector.counts(),
    held: () => scheduler?.heldCount ?? 0,
    inTransit: () => consumer?.inTransit ?? 0,
    inbound: () => intake?.sessions ?? 0,
    outboundByBinding: () => {
      const open = scheduler?.connectionsByBinding() ?? new Map<string, number>();
      for (const b of bindings.names()) if (!open.has(b)) open.set(b, 0);
      return open;
    },
    redisPing,
    adaptive: () => adaptive.moved(),
    leases: () => leases.held(),
  });
  webhooks = new Webhooks({
    config, redis: queueRedis, connect: () => connectRedis(target, 'queue', 'webhook'), prefix, node: config.node_name, clock: systemClock, log,
    counts: new WebhookMetrics(metrics.registry, () => webhooks!.status()),
  });
  const { feed } = webhooks;
  const resolver = createResolver({ servers: config.dns.servers, timeout: config.dns.timeout, tries: config.dns.tries });
  const sts = new StsDiscovery({
    resolver, fetch: httpsPolicyFetcher({ resolver, trust, timeoutMs: STS_FETCH_TIMEOUT_MS }),
    cache: new RedisPolicyCache(queueRedis, prefix, systemClock.now), now: systemClock.now, log,
  });
  const gate = new ClusterGate({ leases, throttles: new ClusterThrottles(queueRedis, prefix), options });
  const initiator = new Initiator({
    resolver, connector: smtpConnector(trust), health, hosts, hooks, clock: systemClock, log, options, isLocalAddress,
    policies: new DestinationPolicies({ sts, dnssec: createDnsClient({ servers: config.dns.servers, timeout: config.dns.timeout, tries: config.dns.tries }) }),
    observer: metrics, replies, gate,
  });
  // DSNs are queued in the middle of an attempt: like the attempt's other writes they wait out a
  // Redis outage, where intake's fail fast and would make the attempt be made again.
  const queueShards = openShards(queueRedis, layout, compression ?? fixedCompression(compressBodies), log);
  const dsnEnqueuer = new Enqueuer(queueShards, () => options.longestExpiration());
  scheduler = new Scheduler({
    initiator, parked: new RedisParkedIndex(queueRedis, queueShards), options, bindings, hooks, clock: systemClock, log,
    observer: metrics, maxHeld: config.max_active_messages, shaping: shaper, replies,
    delays: { delayed: (domain, until, why, failures) => cluster?.delayed(domain, until, why, failures) }, gate,
  });
  const pairRates = new PairRates(systemClock.now);
  const outcomes = new Outcomes({
    clock: systemClock, log, hooks, feed,
    counter: {
      delivered: (binding, domain, n, latencyMs) => { metrics.delivered(binding, n, latencyMs); pairRates.add(binding, domain, 'delivered', n); },
      deferred: (binding, domain, status, bounceClass, n) => { metrics.deferred(binding, status, bounceClass, n); pairRates.add(binding, domain, 'deferred', n); },
      failed: (binding, domain, status, bounceClass, n) => { metrics.failed(binding, status, bounceClass, n); pairRates.add(binding, domain, 'failed', n); },
    }, reportingMta: config.hostname, bounceClass: (r) => bounceClasses.classify(r),
    retryPolicy: (binding, domain) => retryPolicyOf(options.of(binding, domain)),
    maxReturnSize: () => options.global.dsn_max_return_size,
    delayDsnAfter: () => options.global.delay_dsn_after,
    queueDsn: ({ qid, to, body, now, eightBit, smtputf8, tenant }) => dsnEnqueuer.enqueue({
      qid, sender: '', jobs: [{ domain: domainOf(to), recipients: [to] }], body, receivedAt: now, tenant,
      ...(eightBit ? { eightBit } : {}), ...(smtputf8 ? { smtputf8 } : {}),
    }),
  });
  consumer = new Consumer({
    connection: queueRedis, shards: queueShards, concurrency: config.max_active_messages, jobLockTimeout: config.job_lock_timeout,
    scheduler, outcomes, bindings, clock: systemClock, log,
    historyRetention: () => options.global.message_history_retention,
  });
  cluster = new ClusterState({
    redis: queueRedis, bus, prefix, node: config.node_name, clock: systemClock, log,
    local: localNode({ scheduler, bindings, consumer, shaper, health, log }),
  });
  const dkim = new DkimSigner({ keys: dkimKeys.keys, hooks, log, counter: metrics });
  intake = new Intake({
    listeners: config.listen, hostname: config.hostname, enqueuer, clock: systemClock, log, closeTimeout: config.shutdown_timeout,
    bindings, bindingRules: config.binding_rules, defaultBinding: config.default_binding, hooks, dkim, counter: metrics, feed,
  });
  const reloader = new Reloader({
    loaded, log, notifier: opts.notifier, pluginContext,
    swap: (next, fresh) => {
      hooks.adopt(fresh.hooks);
      dkim.reconfigure(fresh.dkimKeys);
      shaper.reconfigure(next.config.shaping_rules);
      bindings.reconfigure(next.config);
      options.reconfigure(next.config);
      bounceClasses.reconfigure(next.config.bounce_class_rules);
      intake!.reconfigure({ bindingRules: next.config.binding_rules, defaultBinding: next.config.default_binding });
      scheduler!.reconfigure();
      log.level = next.config.log_level;
    },
  });
  const nodes = new NodeRegistry({
    redis: queueRedis, prefix, name: config.node_name, version: VERSION, clock: systemClock, log,
    report: () => {
      const t = scheduler!.totals();
      return { connections: { outbound: t.connections, connecting: t.connecting, inbound: intake!.sessions }, held: t.held, rates: metrics.rates() };
    },
    queues: () => scheduler!.queueFigures(),
  });
  const admin = new AdminServer({
    scheduler, nodes, shaping: shaper, adaptive, cluster, shards: intakeShards, inspector, health, bindings, counts: metrics, webhooks, pairRates,
    inbound: () => intake!.sessions,
    config: () => ({ config: reloader.current.config, document: reloader.current.document }),
    reload: () => reloader.reload(), clock: systemClock, startedAt: systemClock.now(), version: VERSION,
  }, config.admin, log);
  let status: StatusServer | undefined;

  async function stop(): Promise<void> {
    await nodes.stop();
    await intake!.close();
    await admin.close();
    await consumer!.close();
    await webhooks!.stop();
    await leases.close();
    await hooks.idle();
    shaper.close();
    await status?.close();
    metrics.close();
    compression?.stop();
    await Promise.all([...intakeShards.all, ...queueShards.all].map((p) => p.queue.close()));
    intakeRedis.disconnect();
    queueRedis.disconnect();
    subscriber.disconnect();
    await embedded?.stop();
  }

  try {
    await layout.claim(queueRedis);
    await compression?.start();
    await nodes.start();
  } catch (err) {
    await stop();
    throw err;
  }
  if (embedded) await returnOrphanedJobs(intakeShards.all.map((p) => p.queue), log);
  await bus.start();
  await leases.start();
  await shaper.restore();
  await cluster.restore();
  consumer.start();
  webhooks.start();
  await scheduler.adoptParked();
  try {
    await intake.start();
    await admin.start();
    if (config.metrics.listen !== false) {
      status = await startStatusServer({
        listen: config.metrics.listen, registry: metrics.registry, health: () => redisHealth(redisPing), ready: () => intake!.ready, log,
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
  return { scheduler, reload: () => reloader.reload(), stop, abandonSessions: () => consumer.close(true) };
}

/** Runs the daemon until a stop signal; see daemon/lifecycle.ts. */
export async function runDaemon(loaded: LoadedConfig): Promise<void> {
  const log = createLogger(loaded.config.log_level);
  const notifier = new SystemdNotifier({ log });
  const daemon = await startDaemon(loaded, { log, notifier });
  await notifier.ready('accepting mail');
  await superviseSignals(daemon, { log, notifier, shutdownTimeout: loaded.config.shutdown_timeout });
}
