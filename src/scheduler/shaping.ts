// Where shaping meets the ready queues: a queue as an action's scope sees it, the replies of an
// attempt offered to the rules, and the reply mail gets when a bounce action fails it.
import { type Reply, reply } from '../core/reply.js';
import type { Attempt } from '../outcome/attempt.js';
import type { ShapingAction } from '../shaping/action.js';
import type { ObservedReply, ShapedQueue } from '../shaping/rule.js';
import type { ReadyQueue } from './ready-queue.js';

export function shapedQueue(q: ReadyQueue): ShapedQueue {
  return { binding: q.binding.name, domain: q.domain, mxHosts: q.record.targets().map((t) => t.host.toLowerCase()) };
}

/** Each distinct reply a server gave in the attempt, once: one signal per transaction, however many recipients shared it. */
export function observeAttempt(observe: (o: ObservedReply) => void, q: ReadyQueue, attempt: Attempt): void {
  const seen = new Set<string>();
  for (const r of attempt.replies) {
    if (r.phase === undefined) continue;
    const key = `${r.phase} ${r.reply.code} ${r.reply.enhanced} ${r.reply.text}`;
    if (seen.has(key)) continue;
    seen.add(key);
    observe({ binding: q.binding.name, domain: q.domain, mxHost: attempt.target?.host, phase: r.phase, reply: r.reply });
  }
}

/** A bounce action's reply: permanent, with the trigger's enhanced status made permanent (4.7.28 becomes 5.7.28). */
export function bounceReply(a: ShapingAction): Reply {
  const m = /^(\d{3}) (\d\.\d{1,3}\.\d{1,3})/.exec(a.reply);
  const code = m && Number(m[1]) >= 500 ? Number(m[1]) : 554;
  const enhanced = m ? `5${m[2]!.slice(1)}` : '5.0.0';
  return reply(code, enhanced, `[internal] failed by shaping rule ${a.rule} after the receiver said: ${a.reply}`);
}
