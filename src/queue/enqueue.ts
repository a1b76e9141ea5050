// Puts an accepted message into Redis: the body once, then one job per destination domain. Only
// when all of it succeeded may intake answer 250.
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
import type { Queue } from 'bullmq';
import type { BindingChoice } from '../binding/assign.js';
import { jobIdFor } from '../core/ids.js';
import type { EnvelopeParams } from '../delivery/envelope.js';
import type { MessageStore } from '../store/message-store.js';
import type { DeliveryJobData } from './job.js';

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
}

/** Body TTL beyond message_expiration: time for the final attempt and its bounce. */
const BODY_GRACE_MS = 7 * 86_400_000;

export class Enqueuer {
  constructor(
    private readonly store: MessageStore,
    private readonly queue: Queue<DeliveryJobData>,
    private readonly messageExpiration: () => number,
  ) {}

  async enqueue(msg: NewMessage): Promise<void> {
    const params = {
      ...(msg.ret ? { ret: msg.ret } : {}), ...(msg.envid ? { envid: msg.envid } : {}),
      ...(msg.eightBit ? { eightBit: msg.eightBit } : {}), ...(msg.smtputf8 ? { smtputf8: msg.smtputf8 } : {}),
    };
    const jobs = msg.jobs.map(({ domain, recipients, binding: choice, dsn }, i) => ({
      name: domain,
      data: {
        qid: msg.qid, domain, sender: msg.sender, recipients, receivedAt: msg.receivedAt, attempts: 0,
        messageId: msg.messageId, ...params,
        ...(choice && 'binding' in choice ? { binding: choice.binding } : {}),
        ...(choice && 'group' in choice ? { bindingGroup: choice.group } : {}),
        ...(dsn ? { dsn } : {}),
      } satisfies DeliveryJobData,
      opts: { jobId: jobIdFor(msg.qid, i) },
    }));
    const writes = [
      this.store.put(msg.qid, msg.body, jobs.map((j) => j.opts.jobId), this.messageExpiration() + BODY_GRACE_MS),
      ...jobs.map((j) => this.queue.add(j.name, j.data, j.opts)),
    ];
    const results = await Promise.allSettled(writes);
    const failed = results.find((w) => w.status === 'rejected');
    if (!failed) return;
    const added = results.slice(1);
    // The client is told to try again, so nothing of this copy may stay to be delivered.
    await Promise.allSettled([
      this.store.discard(msg.qid),
      ...jobs.flatMap((j, i) => (added[i].status === 'fulfilled' ? [this.queue.remove(j.opts.jobId)] : [])),
    ]);
    throw failed.reason;
  }
}
