// Whether a source address belongs to this host, so a binding whose bind_address is elsewhere
// fails with CONN_ERROR_BIND before any packet is sent.
import { networkInterfaces } from 'node:os';
import { AddressSet } from '../core/cidr.js';

export function isLocalAddress(address: string): boolean {
  for (const entries of Object.values(networkInterfaces())) {
    for (const e of entries ?? []) {
      if (e.address === address) return true;
      // Linux routes a loopback interface's whole prefix (127.0.0.0/8) to itself.
      if (e.internal && e.cidr && new AddressSet([e.cidr]).has(address)) return true;
    }
  }
  return false;
}
