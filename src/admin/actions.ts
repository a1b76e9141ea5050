// The write side of the admin API: flush, fail, suspend and resume, per domain, binding or
// message. Mail in Redis is made due now with BullMQ's own promote, never moved by hand.
import { type Reply, reply } from '../core/reply.js';
import { qidOfJob } from '../core/ids.js';
import { promoteDelayed } from '../queue/promote.js';
import type { ShardQueue } from '../queue/shards.js';
import type { AdminContext } from './context.js';
import { storedParts } from './message.js';
import type { FailResult, FlushResult, RetryResult, SuspendResult } from './protocol.js';
import { NotFound } from './views.js';

function failureReply(note: string | undefined): Reply {
  return reply(554, '5.0.0', `[internal] failed by an operator${note ? `: ${note}` : ''}`);
}

export async function flush(ctx: AdminContext, domain: string | undefined): Promise<FlushResult> {
  await ctx.cluster.flush(domain);
  if (domain === undefined) {
    const { delayed } = await ctx.inspector.counts();
    await Promise.all(ctx.shards.all.map((part) => part.queue.promoteJobs()));
    return { flushed: delayed };
  }
  const { delayed } = await ctx.inspector.idsOf(domain);
  return { flushed: await promoteDelayed(ctx.shards.of(domain).queue, delayed) };
}

/** Everything queued for the domain fails: held mail now, mail in Redis as it comes off the queue. */
export async function failDomain(ctx: AdminContext, domain: string, quiet: boolean, note: string | undefined): Promise<FailResult> {
  const why = failureReply(note);
  const { delayed, waiting, active } = await ctx.inspector.idsOf(domain);
  const held = await ctx.cluster.fail({ domain }, [...delayed, ...waiting, ...active], why, quiet);
  await promoteDelayed(ctx.shards.of(domain).queue, delayed);
  return { failed: held + delayed.length + waiting.length };
}

/** A suspension or resume, kept in Redis and in force on every node of the cluster. */
export async function suspend(ctx: AdminContext, target: { domain?: string; binding?: string }, on: boolean): Promise<SuspendResult> {
  if (target.binding !== undefined) {
    if (!ctx.bindings.get(target.binding)) throw new NotFound(`no binding named ${target.binding}`);
    await ctx.cluster.suspend({ binding: target.binding }, on);
    return { binding: target.binding, suspended: on };
  }
  const domain = target.domain!;
  await ctx.cluster.suspend({ domain }, on);
  return { domain, suspended: on };
}

/** The unfinished jobs of a message, by shard and state; the id may be a queue id or one of its job ids. */
async function liveJobs(ctx: AdminContext, id: string): Promise<{ qid: string; parts: Array<{ part: ShardQueue; delayed: string[]; waiting: string[]; active: string[] }> }> {
  let qid = id;
  let stored = await storedParts(ctx, qid);
  if (stored.length === 0 && qid !== qidOfJob(id)) {
    qid = qidOfJob(id);
    stored = await storedParts(ctx, qid);
  }
  if (stored.length === 0) throw new NotFound(`no queued message ${id}`);
  const parts = await Promise.all(stored.map(async ({ part, jobs }) => {
    const out = { part, delayed: [] as string[], waiting: [] as string[], active: [] as string[] };
    for (const jobId of jobs) {
      const state = await part.queue.getJobState(jobId);
      if (state === 'delayed') out.delayed.push(jobId);
      else if (state === 'waiting' || state === 'prioritized') out.waiting.push(jobId);
      else if (state === 'active') out.active.push(jobId);
    }
    return out;
  }));
  return { qid, parts };
}

async function promoteEach(parts: Array<{ part: ShardQueue; delayed: string[] }>): Promise<number> {
  return (await Promise.all(parts.map((p) => promoteDelayed(p.part.queue, p.delayed)))).reduce((a, b) => a + b, 0);
}

export async function retryMessage(ctx: AdminContext, id: string): Promise<RetryResult> {
  const { parts } = await liveJobs(ctx, id);
  return { retried: await promoteEach(parts) };
}

export async function failMessage(ctx: AdminContext, id: string, quiet: boolean, note: string | undefined): Promise<FailResult> {
  const { qid, parts } = await liveJobs(ctx, id);
  const why = failureReply(note);
  const held = await ctx.cluster.fail({ qid }, parts.flatMap((p) => [...p.delayed, ...p.waiting, ...p.active]), why, quiet);
  await promoteEach(parts);
  return { failed: held + parts.reduce((n, p) => n + p.delayed.length + p.waiting.length, 0) };
}
