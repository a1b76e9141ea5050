// Puts an accepted message into Redis: the body once per shard its jobs go to (once, for mail to
// one domain or on an unsharded queue), then one job per destination domain. Only when all of it
// succeeded (and, with redis.wait_replicas, reached that many replicas) may intake answer 250.
//
// The body's write and the jobs' adds leave together and share Redis's fsync: with appendfsync
// always, waiting for the body before adding the jobs cost intake a second fsync per message.
// They go out on one connection (the store's and the queue's must be the same), body first, so
// Redis runs them in that order and no job is visible before its body. ioredis sends a script's
// text on a connection's first use of it, so a missing script cannot retry the body's write after
// the jobs. Should the body's write fail and a job's add succeed all the same (Redis at its memory
// limit freeing some between the two), the job is removed before intake answers.
//
// The jobs are added one by one: BullMQ's addBulk is a pipeline (not a transaction either), and
// building one on its connection costs ioredis some 28 µs.
//
// With wait_replicas the jobs are added delayed, for longer than a refusal takes to remove them, and
// made due only once WAIT confirmed the writes: a job due at once could be taken and delivered
// before a WAIT that then fails, and the client, told 451, would send the message again.
import type { BindingChoice } from '../binding/assign.js';
import { jobIdFor } from '../core/ids.js';
import type { EnvelopeParams } from '../delivery/envelope.js';
import type { ReplicaWait } from '../store/replica-wait.js';
import type { DeliveryJobData } from './job.js';
import { promoteDelayed } from './promote.js';
import type { ShardQueue, Sharded } from './shards.js';

/** One job of a message: its recipients at one destination domain. */
interface NewJob {
  domain: string;
  recipients: string[];
  /** The binding or group assigned at intake; absent: the default binding. */
  binding?: BindingChoice | undefined;
  dsn?: EnvelopeParams['dsn'];
}

interface NewMessage extends Omit<EnvelopeParams, 'dsn'> {
  qid: string;
  sender: string;
  jobs: readonly NewJob[];
  body: Buffer;
  receivedAt: number;
  messageId?: string | undefined;
  tenant?: string | undefined;
}

/** Body TTL beyond message_expiration: time for the final attempt and its bounce. */
const BODY_GRACE_MS = 7 * 86_400_000;

interface Job {
  name: string;
  data: DeliveryJobData;
  opts: { jobId: string; delay?: number };
}

export class Enqueuer {
  /** `replicas`: with redis.wait_replicas, the jobs wait delayed until WAIT confirms the writes, then are made due. */
  constructor(
    private readonly shards: Sharded<ShardQueue>,
    private readonly messageExpiration: () => number,
    private readonly replicas?: ReplicaWait,
  ) {}

  async enqueue(msg: NewMessage): Promise<void> {
    const params = {
      ...(msg.ret ? { ret: msg.ret } : {}), ...(msg.envid ? { envid: msg.envid } : {}),
      ...(msg.eightBit ? { eightBit: msg.eightBit } : {}), ...(msg.smtputf8 ? { smtputf8: msg.smtputf8 } : {}),
    };
    const hold = this.replicas?.holdMs;
    // Each shard taking jobs of the message gets its own copy of the body, so a shard never reads another's slot.
    const byShard = new Map<ShardQueue, Job[]>();
    msg.jobs.forEach(({ domain, recipients, binding: choice, dsn }, i) => {
      const part = this.shards.of(domain);
      const list = byShard.get(part) ?? [];
      byShard.set(part, list);
      list.push({
        name: domain,
        data: {
          qid: msg.qid, domain, sender: msg.sender, recipients, receivedAt: msg.receivedAt, attempts: 0,
          messageId: msg.messageId, ...params, ...(msg.tenant !== undefined ? { tenant: msg.tenant } : {}),
          ...(choice && 'binding' in choice ? { binding: choice.binding } : {}),
          ...(choice && 'group' in choice ? { bindingGroup: choice.group } : {}),
          ...(dsn ? { dsn } : {}),
        } satisfies DeliveryJobData,
        opts: { jobId: jobIdFor(msg.qid, i), ...(hold ? { delay: hold } : {}) },
      });
    });
    const parts = [...byShard];
    const ttl = this.messageExpiration() + BODY_GRACE_MS;
    const writes = parts.flatMap(([part, jobs]): Array<{ part: ShardQueue; job?: Job; write: Promise<unknown> }> => [
      { part, write: part.store.put(msg.qid, msg.body, jobs.map((j) => j.opts.jobId), ttl) },
      ...jobs.map((job) => ({ part, job, write: part.queue.add(job.name, job.data, job.opts) })),
    ]);
    const results = await Promise.allSettled(writes.map((w) => w.write));
    try {
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      await this.replicas?.confirm(parts.map(([part]) => `${part.shard.prefix}:msg:${msg.qid}`));
    } catch (err) {
      // The client is told to try again, so nothing of this copy may stay to be delivered.
      await Promise.allSettled([
        ...parts.map(([part]) => part.store.discard(msg.qid)),
        ...writes.flatMap((w, i) => (w.job && results[i]!.status === 'fulfilled' ? [w.part.queue.remove(w.job.opts.jobId)] : [])),
      ]);
      throw err;
    }
    // Confirmed: the jobs are due now. A promotion lost (refused, or not yet replicated at a
    // failover) leaves its job due at the end of the hold, not lost.
    if (hold) await Promise.allSettled(parts.map(([part, jobs]) => promoteDelayed(part.queue, jobs.map((j) => j.opts.jobId))));
  }
}
