// Delivers one domain's recipients of one message from one binding: asks the initiator for a
// connection, waits out the conditions that call for no action (lookup in flight, every MX at
// its limit), and runs the transaction. Errors that call for an action come back as replies
// with their flags; the scheduler decides what the action means for the queue.
import type { Binding } from '../binding/registry.js';
import type { Clock } from '../core/clock.js';
import type { Reply } from '../core/reply.js';
import type { DomainRecords } from './domain-record.js';
import { CONN_ERROR_HOST_MAX_REACHED, CONN_ERROR_MX_LOOKUP_PENDING } from './flags.js';
import type { HostConnections } from './host-connections.js';
import type { ConnectionError, ConnectionHandle, Initiator } from './initiator.js';
import type { Target } from './route.js';
import { type Envelope, type RecipientReply, runTransaction } from './session.js';

export interface DeliveryRequest extends Envelope {
  domain: string;
  binding: Binding;
}

export interface DeliveryResult {
  replies: RecipientReply[];
  /** The address that took the transaction, or the last one tried. */
  target?: Target | undefined;
  /** CONN_ERROR_* | CONN_ACTION_* when no transaction took place. */
  flags?: number | undefined;
}

export interface DelivererDeps {
  initiator: Initiator;
  records: DomainRecords;
  hosts: HostConnections;
  clock: Clock;
}

type Connected = { handle: ConnectionHandle<undefined>; error?: ConnectionError | undefined };

export class Deliverer {
  constructor(private readonly deps: DelivererDeps) {}

  async deliver(req: DeliveryRequest): Promise<DeliveryResult> {
    const { initiator, records, hosts, clock } = this.deps;
    const dr = records.get(req.domain);
    const all = (r: Reply) => req.recipients.map((recipient) => ({ recipient, reply: r }));
    for (;;) {
      let done!: (c: Connected) => void;
      const connected = new Promise<Connected>((resolve) => {
        done = resolve;
      });
      const r = initiator.initiateConnection(dr, req.binding, clock.now(),
        (handle, error) => done({ handle, error }), (handle, error) => done({ handle, error }), undefined);
      if ('error' in r) {
        if (r.error & CONN_ERROR_MX_LOOKUP_PENDING && dr.mx.phase === 'resolving') {
          await dr.mx.settled;
          continue;
        }
        if (r.error & CONN_ERROR_HOST_MAX_REACHED) {
          await hosts.released(initiator.hostsOf(dr));
          continue;
        }
        return { replies: all(r.reply), flags: r.error };
      }
      const { handle, error } = await connected;
      if (error) return { replies: all(error.reply), target: handle.target, flags: error.flags };
      try {
        return { replies: await runTransaction(handle.client!, req), target: handle.target };
      } finally {
        handle.close();
      }
    }
  }
}
