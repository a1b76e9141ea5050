// What a cluster event does to this node's own parts: the scheduler's holds, the consumer's doomed
// jobs, the shaper's actions, the address marks an operator's flush clears.
import type { Bindings } from '../binding/registry.js';
import type { AddressHealth } from '../delivery/address-health.js';
import type { Logger } from 'pino';
import type { Consumer } from '../queue/consumer.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { Shaper } from '../shaping/shaper.js';
import type { LocalNode } from './state.js';

interface Parts {
  scheduler: Scheduler;
  bindings: Bindings;
  consumer: Pick<Consumer, 'failOnArrival'>;
  shaper: Pick<Shaper, 'adopt' | 'drop'>;
  health: AddressHealth;
  log: Logger;
}

export function localNode(p: Parts): LocalNode {
  return {
    suspend(target, on) {
      if ('domain' in target) return on ? p.scheduler.suspendDomain(target.domain) : p.scheduler.resumeDomain(target.domain);
      if (!p.bindings.get(target.binding)) {
        p.log.warn({ event: 'suspended_binding_unknown', binding: target.binding }, 'a suspension names a binding this node does not have; ignored here');
        return;
      }
      if (on) p.scheduler.suspendBinding(target.binding);
      else p.scheduler.resumeBinding(target.binding);
    },
    delay: (domain, until, reply) => p.scheduler.delayDomain(domain, until, reply),
    flush(domain) {
      p.scheduler.flush(domain);
      const views = p.scheduler.state(domain).domains;
      p.health.clearAddresses(views.flatMap((d) => (d.mx.hosts ?? []).map((h) => h.address)), p.bindings.names());
    },
    fail(match, jobs, reply, quiet) {
      // A job on a connection now finishes its transaction; should it be deferred, it fails on return.
      p.consumer.failOnArrival(jobs, reply, quiet);
      return p.scheduler.failHeld((e) => ('domain' in match ? e.domain === match.domain : e.qid === match.qid), reply, quiet);
    },
    shaping: (change, action) => (change === 'started' ? p.shaper.adopt(action) : p.shaper.drop(action.id)),
  };
}
