// Signs each message once, at intake: picks its keys (From: domain, then the dkim_sign hook) and
// adds their signatures. A message that should be signed and cannot be is not accepted unsigned.
import type { Logger } from 'pino';
import type { HookRegistry } from '../hooks/registry.js';
import type { HookDkimKey, HookMessage } from '../hooks/signatures.js';
import { smtpError } from '../intake/reply.js';
import { fromDomain, keysFor } from './choose.js';
import type { DkimKey } from './keys.js';
import { dkimSignatures } from './sign.js';

interface DkimCounter {
  dkimSigned(key: HookDkimKey, result: 'signed' | 'failed'): void;
}

interface DkimSignerDeps {
  keys: readonly DkimKey[];
  hooks: HookRegistry;
  log: Logger;
  counter: DkimCounter;
}

interface Signed {
  /** DKIM-Signature fields to put on top of the message; empty when nothing signs it. */
  header: string;
  /** `domain:selector` of each signature, for the reception log. */
  labels: string[];
}

const label = (k: { domain: string; selector: string }) => `${k.domain}:${k.selector}`;
const view = (k: DkimKey): HookDkimKey => ({ domain: k.domain, selector: k.selector, algorithm: k.algorithm });

export class DkimSigner {
  constructor(private readonly deps: DkimSignerDeps) {}

  /** A reload: the next message is signed with the new keys. */
  reconfigure(keys: readonly DkimKey[]): void {
    this.deps.keys = keys;
  }

  /** Throws 451 4.3.0 when a chosen key is unknown or fails to sign. */
  async sign(msg: HookMessage, message: Buffer, now: number): Promise<Signed> {
    const keys = await this.choose(msg);
    if (keys.length === 0) return { header: '', labels: [] };
    try {
      const header = await dkimSignatures(message, keys, now);
      for (const k of keys) this.deps.counter.dkimSigned(view(k), 'signed');
      return { header, labels: keys.map(label) };
    } catch (err) {
      for (const k of keys) this.deps.counter.dkimSigned(view(k), 'failed');
      this.deps.log.error({ event: 'dkim_failed', qid: msg.qid, keys: keys.map(label), err: (err as Error).message }, 'DKIM signing failed; message refused');
      throw smtpError(451, '4.3.0 DKIM signing failed, try again later');
    }
  }

  /** The From: domain's keys, unless a dkim_sign handler chose others or none. */
  private async choose(msg: HookMessage): Promise<DkimKey[]> {
    const { keys, hooks, log } = this.deps;
    const hooked = hooks.has('dkim_sign');
    // Most messages of a daemon without keys: parsing their From: would find nothing to sign with.
    if (keys.length === 0 && !hooked) return [];
    const defaults = keysFor(fromDomain(msg.headers.get('from')), keys);
    if (!hooked) return defaults;
    const choice = (await hooks.call('dkim_sign', msg, defaults.map(view))).filter((c) => c !== undefined).pop();
    if (choice === undefined) return defaults;
    if (choice === false) return [];
    const picked = choice.map((want) => keys.find((k) => k.domain === want.domain.toLowerCase() && k.selector === want.selector));
    const unknown = choice.filter((_, i) => picked[i] === undefined).map(label);
    if (unknown.length > 0) {
      // Sending such mail unsigned, or with fewer signatures than the plugin meant, would go unnoticed until receivers refuse it.
      log.error({ event: 'dkim_unknown_key', qid: msg.qid, keys: unknown }, 'dkim_sign chose keys that are not configured; message refused');
      throw smtpError(451, `4.3.0 DKIM key ${unknown.join(', ')} is not configured, try again later`);
    }
    return picked as DkimKey[];
  }
}
