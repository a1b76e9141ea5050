// A DNS client of our own over dns-packet, for what node's resolver does not tell on Node 20:
// TLSA records, and the AD bit a validating resolver sets on DNSSEC-secure answers (RFC 4035).
import { randomInt } from 'node:crypto';
import { getServers } from 'node:dns';
import { isIP } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { type DnsServer, exchange } from './exchange.js';
import type { MxRecord } from './resolver.js';

export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  data: Buffer;
}

interface RecordData {
  A: string;
  AAAA: string;
  MX: MxRecord;
  /** One string per record, its character-strings joined (RFC 7208 §3.3, RFC 8461 §3.1). */
  TXT: string;
  TLSA: TlsaRecord;
}

export type RecordType = keyof RecordData;

/**
 * Every outcome of a query, failures included: `authenticated` is the AD bit, also on NXDOMAIN and
 * NODATA, which a validating resolver sets on a proven denial (RFC 6840 §5.7, §5.8). A failure's
 * `code` is the one node's resolver would give (ESERVFAIL, ETIMEOUT, ECONNREFUSED, EREFUSED, …).
 */
export type DnsResult<T> =
  | { kind: 'answer'; records: T[]; authenticated: boolean; /** Seconds, the least of the records'. */ ttl: number }
  | { kind: 'nxdomain' | 'nodata'; authenticated: boolean }
  | { kind: 'failed'; code: string; reason: string };

export interface DnsClient {
  query<T extends RecordType>(name: string, type: T): Promise<DnsResult<RecordData[T]>>;
}

interface DnsClientOptions {
  /** ip or ip:port ([ip]:port for IPv6); default: the system's resolvers. */
  servers?: string[] | undefined;
  /** Milliseconds to wait for one answer. */
  timeout: number;
  /** Rounds over the servers before the query fails. */
  tries: number;
}

// DNS Flag Day 2020's size: an answer that fits it crosses any IPv6 path (MTU 1280) unfragmented.
const UDP_PAYLOAD_SIZE = 1232;
const RCODE_NXDOMAIN = 3;
const RCODE_ERRORS: Record<number, string> = { 1: 'EFORMERR', 2: 'ESERVFAIL', 4: 'ENOTIMP', 5: 'EREFUSED' };

function parseServer(text: string): DnsServer {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const [host, port, extra] = bracketed ? [bracketed[1], bracketed[2]] : isIP(text) === 6 ? [text] : text.split(':');
  if (!host || !isIP(host) || (port !== undefined && !/^\d{1,5}$/.test(port)) || extra !== undefined) {
    throw new Error(`DNS server ${text} is not an IP address (ip, ip:port or [ip]:port)`);
  }
  return { host, port: port === undefined ? 53 : Number(port) };
}

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function decodeData(type: RecordType, answer: dnsPacket.Answer): RecordData[RecordType] {
  const data = (answer as { data: unknown }).data;
  switch (type) {
    case 'MX': {
      const mx = data as dnsPacket.MxData;
      return { exchange: mx.exchange, priority: mx.preference ?? 0 };
    }
    case 'TXT':
      return Buffer.concat((Array.isArray(data) ? data : [data]).map((s) => Buffer.from(s as Buffer | string))).toString('utf8');
    case 'TLSA': {
      const t = data as dnsPacket.TlsaData;
      return { usage: t.usage, selector: t.selector, matchingType: t.matchingType, data: t.certificate };
    }
    default:
      return data as string;
  }
}

function encodeQuery(id: number, name: string, type: RecordType): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    // AD in a query asks for the AD bit in the answer (RFC 6840 §5.7); DO does too, and is what
    // makes a validating resolver validate for us. CD stays clear: bogus data must fail there.
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA,
    questions: [{ type, name, class: 'IN' }],
    additionals: [{
      type: 'OPT', name: '.', udpPayloadSize: UDP_PAYLOAD_SIZE, extendedRcode: 0, ednsVersion: 0,
      flags: dnsPacket.DNSSEC_OK, flag_do: true, options: [],
    }],
  });
}

function interpret<T extends RecordType>(packet: dnsPacket.DecodedPacket, type: T, where: string): DnsResult<RecordData[T]> {
  const rcode = (packet.flags ?? 0) & 0xf;
  const authenticated = packet.flag_ad;
  if (rcode === RCODE_NXDOMAIN) return { kind: 'nxdomain', authenticated };
  if (rcode !== 0) {
    const code = RCODE_ERRORS[rcode] ?? 'EBADRESP';
    return { kind: 'failed', code, reason: `${code} from ${where}` };
  }
  // A resolver that followed a CNAME answers with the chain and then the records asked for.
  const wanted = (packet.answers ?? []).filter((a) => a.type === type && (a as { class?: string }).class === 'IN');
  if (wanted.length === 0) return { kind: 'nodata', authenticated };
  return {
    kind: 'answer',
    records: wanted.map((a) => decodeData(type, a) as RecordData[T]),
    authenticated,
    ttl: Math.min(...wanted.map((a) => (a as { ttl?: number }).ttl ?? 0)),
  };
}

export function createDnsClient(opts: DnsClientOptions): DnsClient {
  const servers = (opts.servers && opts.servers.length > 0 ? opts.servers : getServers()).map(parseServer);

  const ask = async <T extends RecordType>(server: DnsServer, name: string, type: T): Promise<DnsResult<RecordData[T]>> => {
    const where = server.host.includes(':') ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
    const id = randomInt(0x10000);
    const message = encodeQuery(id, name, type);
    const accept = (p: dnsPacket.DecodedPacket): boolean => {
      const q = p.questions ?? [];
      return p.type === 'response' && p.id === id && q.length === 1 && q[0]!.type === type && normalise(q[0]!.name) === normalise(name);
    };
    let got = await exchange('udp', server, message, accept, opts.timeout);
    // A truncated answer may lack records, or the signatures that made the resolver set AD.
    if (got.kind === 'reply' && got.packet.flag_tc) got = await exchange('tcp', server, message, accept, opts.timeout);
    if (got.kind === 'failed') return { kind: 'failed', code: got.code, reason: `${got.code} from ${where}` };
    return interpret(got.packet, type, where);
  };

  return {
    async query(name, type) {
      let last: DnsResult<never> = { kind: 'failed', code: 'ECONNREFUSED', reason: 'no DNS server configured' };
      // A server that answered with an error or refused the connection will do so again at once;
      // only one that timed out gets another try.
      const done = new Set<DnsServer>();
      for (let round = 0; round < opts.tries && done.size < servers.length; round++) {
        for (const server of servers) {
          if (done.has(server)) continue;
          const result = await ask(server, name, type);
          if (result.kind !== 'failed') return result;
          last = result;
          if (result.code !== 'ETIMEOUT') done.add(server);
        }
      }
      return last;
    },
  };
}
