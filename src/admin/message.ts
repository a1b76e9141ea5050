// One message's whole story for `impulse message show`: reception from the store, each job's
// attempts from its data while it is queued, or from its finished record once it is done.
import { qidOfJob } from '../core/ids.js';
import type { FinishedRecord, HistoryEntry } from '../outcome/history.js';
import type { ShardQueue } from '../queue/shards.js';
import type { AdminContext } from './context.js';
import type { Attempt, MessageDetail, MessageJob } from './protocol.js';
import { NotFound } from './views.js';

function attempt(h: HistoryEntry): Attempt {
  const { outcome, recipients, action, flags, mx_host, mx_ip, binding, ...rest } = h;
  return {
    ...rest, outcome: outcome ?? 'deferred',
    ...(recipients ? { recipients } : {}), ...(action ? { action } : {}), ...(flags ? { flags } : {}),
    ...(mx_host ? { mx_host } : {}), ...(mx_ip ? { mx_ip } : {}), ...(binding ? { binding } : {}),
  };
}

/**
 * The shards holding a queued message's body, each with the message's unfinished jobs there: one
 * for mail to one domain, one per shard its domains map to otherwise.
 */
export async function storedParts(ctx: AdminContext, qid: string): Promise<Array<{ part: ShardQueue; size: number; jobs: string[] }>> {
  const found = await Promise.all(ctx.shards.all.map(async (part) => ({ part, stored: await part.store.describe(qid) })));
  return found.flatMap(({ part, stored }) => (stored ? [{ part, ...stored }] : []));
}

async function liveJob(ctx: AdminContext, part: ShardQueue, jobId: string): Promise<{ job: MessageJob; sender: string; receivedAt: number; messageId?: string } | undefined> {
  const job = await part.queue.getJob(jobId);
  if (!job) return undefined;
  const state = await job.getState();
  const data = job.data;
  const due = state === 'delayed' ? await ctx.inspector.dueAt(part.shard, jobId) : undefined;
  const binding = data.binding ?? (data.bindingGroup ? ctx.bindings.resolve({ group: data.bindingGroup }, data.qid).name : undefined);
  return {
    sender: data.sender,
    receivedAt: data.receivedAt,
    ...(data.messageId ? { messageId: data.messageId } : {}),
    job: {
      job_id: jobId, domain: data.domain, recipients: data.recipients,
      ...(binding ? { binding } : {}),
      state: state === 'delayed' ? 'delayed' : state === 'active' ? 'active' : 'waiting',
      ...(data.waiting && state === 'delayed' ? { waiting: data.waiting } : {}),
      ...(due !== undefined ? { next_attempt: new Date(due).toISOString() } : {}),
      attempts: (data.history ?? []).map(attempt),
    },
  };
}

function finishedJob(r: FinishedRecord): MessageJob {
  return {
    job_id: r.job_id, domain: r.domain, recipients: r.recipients, ...(r.binding ? { binding: r.binding } : {}),
    state: r.state, attempts: r.attempts.map(attempt), finished_at: r.finished_at,
  };
}

export async function showMessage(ctx: AdminContext, id: string): Promise<MessageDetail> {
  for (const qid of new Set([id, qidOfJob(id)])) {
    const [stored, histories] = await Promise.all([storedParts(ctx, qid), Promise.all(ctx.shards.all.map((p) => p.store.history(qid)))]);
    const finished = new Map(histories.flatMap((h) => [...h]));
    if (stored.length === 0 && finished.size === 0) continue;
    const records = [...finished.values()].map((v) => JSON.parse(v) as FinishedRecord);
    const jobs: MessageJob[] = records.map(finishedJob);
    let sender = records[0]?.sender ?? '';
    let receivedAt = records[0]?.received_at ?? 0;
    let messageId = records.find((r) => r.message_id)?.message_id;
    for (const { part, jobId } of stored.flatMap((s) => s.jobs.map((jobId) => ({ part: s.part, jobId })))) {
      if (finished.has(jobId)) continue;
      const live = await liveJob(ctx, part, jobId);
      if (!live) continue;
      jobs.push(live.job);
      sender = live.sender;
      receivedAt = live.receivedAt;
      messageId ??= live.messageId;
    }
    jobs.sort((a, b) => a.job_id.localeCompare(b.job_id, 'en', { numeric: true }));
    return {
      qid, ...(messageId ? { message_id: messageId } : {}), sender, received_at: new Date(receivedAt).toISOString(),
      ...(stored[0] ? { size_bytes: stored[0].size } : {}), jobs,
    };
  }
  throw new NotFound(`no message ${id}: not queued, and no history kept (message_history_retention)`);
}
