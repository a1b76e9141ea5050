// Delivers one domain's recipients of one message: resolve the targets, then try them in order
// until one takes the transaction. Only an address that never got to the transaction is skipped.
import type { AddressSet } from '../core/cidr.js';
import { ImpulseError } from '../core/error.js';
import { type Reply, reply } from '../core/reply.js';
import type { DnsResolver } from '../dns/resolver.js';
import { type Target, resolveTargets } from './route.js';
import { type Envelope, type RecipientReply, type SessionOptions, type SessionResult, runSession } from './session.js';

export interface DeliveryRequest extends Envelope {
  domain: string;
}

export interface FailedTarget {
  target: Target;
  reply: Reply;
  error: string;
}

export interface DeliveryResult {
  replies: RecipientReply[];
  /** The target that took the transaction, or the last one tried. */
  target?: Target | undefined;
  failedTargets: FailedTarget[];
}

export type Connector = (target: Target, env: Envelope, opts: SessionOptions) => Promise<SessionResult>;

export interface DelivererDeps {
  resolver: DnsResolver;
  routes: Record<string, string>;
  remotePort: number;
  prohibited: AddressSet;
  session: SessionOptions;
  connector?: Connector;
}

export class Deliverer {
  private readonly connector: Connector;

  constructor(private readonly deps: DelivererDeps) {
    this.connector = deps.connector ?? runSession;
  }

  async deliver(req: DeliveryRequest): Promise<DeliveryResult> {
    const all = (r: Reply) => req.recipients.map((recipient) => ({ recipient, reply: r }));
    let targets: Target[];
    try {
      targets = await resolveTargets(req.domain, this.deps.resolver, {
        routes: this.deps.routes, port: this.deps.remotePort, prohibited: this.deps.prohibited,
      });
    } catch (err) {
      if (err instanceof ImpulseError) return { replies: all(err.reply), failedTargets: [] };
      throw err;
    }
    const failedTargets: FailedTarget[] = [];
    for (const target of targets) {
      const result = await this.connector(target, req, this.deps.session);
      if (result.kind === 'transaction') return { replies: result.replies, target, failedTargets };
      failedTargets.push({ target, reply: result.reply, error: result.error });
    }
    const last = failedTargets[failedTargets.length - 1];
    const why = last ? `${last.target.host} [${last.target.address}]: ${last.reply.code} ${last.reply.text}` : 'no target';
    return {
      replies: all(reply(451, '4.4.1', `[internal] no MX of ${req.domain} could be reached (last: ${why})`)),
      target: last?.target,
      failedTargets,
    };
  }
}
