// What the admin API reaches in a running daemon. main.ts builds it from the real objects.
import type { Bindings } from '../binding/registry.js';
import type { NodeRegistry } from '../cluster/nodes.js';
import type { Clock } from '../core/clock.js';
import type { Config, ConfigDocument } from '../config/schema.js';
import type { ClusterState } from '../cluster/state.js';
import type { AddressHealth } from '../delivery/address-health.js';
import type { QueueInspector } from '../queue/inspect.js';
import type { ShardQueue, Sharded } from '../queue/shards.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { AdaptiveLimits } from '../shaping/adaptive.js';
import type { Shaper } from '../shaping/shaper.js';
import type { PairRates } from '../observability/pair-rates.js';
import type { Webhooks } from '../webhooks/webhooks.js';
import type { Counts, ReloadResult } from './protocol.js';

/** A reload's outcome: applied, or refused with the new file's errors. */
export type ReloadOutcome = ({ ok: true } & ReloadResult) | { ok: false; errors: string[] };

export interface AdminContext {
  scheduler: Scheduler;
  /** This node's name and every node's last heartbeat, for the cluster-wide figures. */
  nodes: Pick<NodeRegistry, 'name' | 'list'>;
  shaping: Pick<Shaper, 'active' | 'covering' | 'clear'>;
  adaptive: Pick<AdaptiveLimits, 'view'>;
  /** Operator commands that act on every node of the cluster. */
  cluster: Pick<ClusterState, 'suspend' | 'flush' | 'fail'>;
  /** Each shard's queue and message store. */
  shards: Sharded<ShardQueue>;
  inspector: QueueInspector;
  health: AddressHealth;
  bindings: Bindings;
  counts: { counts(): Counts; rates(): Counts };
  /** Each webhook's queued records and poster. */
  webhooks: Pick<Webhooks, 'status'>;
  /** This node's outcomes per second by binding × domain over the last minute. */
  pairRates: Pick<PairRates, 'rates'>;
  /** SMTP intake sessions open now. */
  inbound(): number;
  /** The config in force: runtime values and the document as written (for scopes). */
  config(): { config: Config; document: ConfigDocument };
  reload(): Promise<ReloadOutcome>;
  clock: Clock;
  startedAt: number;
  version: string;
}
