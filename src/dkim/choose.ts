// Which configured keys sign a message by default: those of the most specific domain that is its
// From: domain or a parent of it. Pure, so the rule is one table test.
import { domainToASCII } from 'node:url';
import addressparser from 'nodemailer/lib/addressparser';

/**
 * The domain of the first mailbox in a From: field, in its ASCII form; undefined when there is
 * none. DMARC aligns with that one mailbox (RFC 7489 §6.6.1 leaves several to local policy).
 */
export function fromDomain(from: string | undefined): string | undefined {
  if (from === undefined) return undefined;
  const mailbox = addressparser(from, { flatten: true }).find((a) => a.address);
  const at = mailbox?.address.lastIndexOf('@') ?? -1;
  if (!mailbox || at < 0) return undefined;
  const ascii = domainToASCII(mailbox.address.slice(at + 1).replace(/\.$/, ''));
  return ascii === '' ? undefined : ascii.toLowerCase();
}

/** Every key of the longest configured domain equal to `domain` or a parent of it. */
export function keysFor<K extends { readonly domain: string }>(domain: string | undefined, keys: readonly K[]): K[] {
  if (domain === undefined) return [];
  let best = -1;
  for (const k of keys) {
    if ((domain === k.domain || domain.endsWith(`.${k.domain}`)) && k.domain.length > best) best = k.domain.length;
  }
  return keys.filter((k) => k.domain.length === best && (domain === k.domain || domain.endsWith(`.${k.domain}`)));
}
