// Puts an accepted message into Redis: the body once, then one job per destination domain. Only
// when both succeeded may intake answer 250. The jobs are added one by one, in one write to the
// socket all the same: BullMQ's addBulk is a pipeline (not a transaction either), and building
// one on its connection costs ioredis some 28 µs, as much as adding two jobs.
import type { Queue } from 'bullmq';
import type { BindingChoice } from '../binding/assign.js';
import { type DeliveryJobData, jobIdFor, recipientsByDomain } from './job.js';
import type { MessageStore } from './store.js';

export interface NewMessage {
  qid: string;
  sender: string;
  recipients: string[];
  body: Buffer;
  receivedAt: number;
  messageId?: string | undefined;
  /** Binding or group per destination domain; absent: the default binding. */
  bindings?: ReadonlyMap<string, BindingChoice>;
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
    const jobs = [...recipientsByDomain(msg.recipients)].map(([domain, recipients], i) => {
      const choice = msg.bindings?.get(domain);
      return {
        name: domain,
        data: {
          qid: msg.qid, domain, sender: msg.sender, recipients, receivedAt: msg.receivedAt, attempts: 0,
          messageId: msg.messageId,
          ...(choice && 'binding' in choice ? { binding: choice.binding } : {}),
          ...(choice && 'group' in choice ? { bindingGroup: choice.group } : {}),
        } satisfies DeliveryJobData,
        opts: { jobId: jobIdFor(msg.qid, i) },
      };
    });
    await this.store.put(msg.qid, msg.body, jobs.map((j) => j.opts.jobId), this.messageExpiration() + BODY_GRACE_MS);
    const added = await Promise.allSettled(jobs.map((j) => this.queue.add(j.name, j.data, j.opts)));
    const failed = added.find((a) => a.status === 'rejected');
    if (failed) {
      await this.store.discard(msg.qid).catch(() => {});
      throw failed.reason;
    }
  }
}
