// Puts an accepted message into Redis: the body once, then one job per destination domain in
// one atomic addBulk. Only when both succeeded may intake answer 250.
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
    try {
      await this.queue.addBulk(jobs);
    } catch (err) {
      await this.store.discard(msg.qid).catch(() => {});
      throw err;
    }
  }
}
