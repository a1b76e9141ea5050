// Address lists (relay_from, prohibited_hosts) as CIDR sets, on node's own BlockList.
import { BlockList, isIP } from 'node:net';

export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address, bits, extra] = text.trim().split('/');
  if (address === undefined || extra !== undefined) return undefined;
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) {
    return undefined;
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

export class AddressSet {
  private readonly list = new BlockList();

  constructor(cidrs: readonly string[]) {
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (!c) throw new Error(`not a CIDR: ${text}`);
      this.list.addSubnet(c.address, c.prefix, c.family);
    }
  }

  has(address: string): boolean {
    const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    const version = isIP(plain);
    if (version === 0) return false;
    return this.list.check(plain, version === 4 ? 'ipv4' : 'ipv6');
  }
}
