// An authoritative DNS server on loopback, so resolution is exercised over the wire rather than stubbed.
//
// What node's dns.promises.Resolver reports for each zone shape (checked in test/harness.test.ts):
//   name absent (NXDOMAIN)      -> error code 'ENOTFOUND'
//   rcode: 'SERVFAIL'           -> error code 'ESERVFAIL'
//   drop: true                  -> error code 'ETIMEOUT', after exactly `timeout` ms with tries: 1
//                                  (default tries back off: timeout 300 took 4.2 s)
//   name present, type absent   -> error code 'ENODATA'
//   null MX ({0, '.'})          -> resolveMx resolves [{ priority: 0, exchange: '' }]
// Node names the MX preference `priority`. SERVFAIL is not retried. TCP is served on the same port.
//
// It also stands in for a DNSSEC-validating resolver, as src/dns/client.ts sees one: an entry with
// `secure: true` is in a signed zone, so its answers carry the AD bit when the query had DO or AD set,
// its denials too (RFC 6840 §5.7, §5.8): `{ secure: true }` alone is a secure NODATA for every
// type, `{ secure: true, rcode: 'NXDOMAIN' }` a secure NXDOMAIN; a name absent from the zone is an
// insecure NXDOMAIN. A UDP answer larger than the query's EDNS payload size (512 without EDNS), or
// any UDP answer of a `truncate: true` entry, comes back with TC and no records, as real servers
// truncate; the same query over TCP gets the whole answer.
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { Condition } from './wait.js';

export type ZoneEntry = {
  mx?: Array<{ preference: number; exchange: string }>;
  a?: string[];
  aaaa?: string[];
  /** One string per record, sent as character-strings of at most 255 bytes. */
  txt?: string[];
  tlsa?: Array<{ usage: number; selector: number; matchingType: number; data: Buffer }>;
  rcode?: 'NXDOMAIN' | 'SERVFAIL';
  drop?: boolean;
  secure?: boolean;
  truncate?: boolean;
};

// Keyed by lowercase name without trailing dot; read on every query so tests can change it live.
export type Zone = Record<string, ZoneEntry>;

export type DnsQuery = {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
  recursionDesired: boolean;
  /** The AD bit of the query. */
  authenticData: boolean;
  /** The DO bit of the query's OPT record; false without one. */
  dnssecOk: boolean;
  /** From the query's OPT record; undefined without one (plain DNS, 512 bytes). */
  udpPayloadSize: number | undefined;
};

export type TestDns = {
  server: string;
  port: number;
  zone: Zone;
  queries: DnsQuery[];
  waitForQuery(pred: (q: DnsQuery) => boolean, timeoutMs?: number): Promise<DnsQuery>;
  close(): Promise<void>;
};

const TTL = 60;
const RCODES = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3 } as const;

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

const PLAIN_UDP_SIZE = 512;

function optOf(packet: dnsPacket.DecodedPacket): dnsPacket.OptAnswer | undefined {
  return packet.additionals?.find((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
}

// Whole character-strings of at most 255 bytes each, as a long TXT record is published.
function characterStrings(text: string): Buffer[] {
  const bytes = Buffer.from(text);
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 255) chunks.push(bytes.subarray(i, i + 255));
  return chunks.length > 0 ? chunks : [Buffer.alloc(0)];
}

function recordsOf(entry: ZoneEntry, question: dnsPacket.Question): dnsPacket.Answer[] {
  const owner = { name: question.name, ttl: TTL, class: 'IN' as const };
  switch (question.type) {
    case 'MX':
      return (entry.mx ?? []).map((mx) => ({ ...owner, type: 'MX', data: { ...mx } }));
    case 'A':
      return (entry.a ?? []).map((ip) => ({ ...owner, type: 'A', data: ip }));
    case 'AAAA':
      return (entry.aaaa ?? []).map((ip) => ({ ...owner, type: 'AAAA', data: ip }));
    case 'TXT':
      return (entry.txt ?? []).map((text) => ({ ...owner, type: 'TXT', data: characterStrings(text) }));
    case 'TLSA':
      return (entry.tlsa ?? []).map((t) => ({
        ...owner, type: 'TLSA', data: { usage: t.usage, selector: t.selector, matchingType: t.matchingType, certificate: t.data },
      }));
    default:
      return [];
  }
}

// Returns null when the query must go unanswered.
function respond(query: dnsPacket.DecodedPacket, zone: Zone, transport: DnsQuery['transport']): dnsPacket.Packet | null {
  const rd = (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  const opt = optOf(query);
  // An answer to an EDNS query carries an OPT record (RFC 6891), with the query's DO bit (RFC 3225 §3).
  const additionals: dnsPacket.Answer[] = opt
    ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: opt.flags & dnsPacket.DNSSEC_OK, flag_do: opt.flag_do, options: [] }]
    : [];
  const base = { type: 'response' as const, id: query.id ?? 0, questions: query.questions ?? [], additionals };
  const question = query.questions?.[0];
  if (!question) return { ...base, flags: rd | RCODES.FORMERR };

  const entry = zone[normalise(question.name)];
  if (entry?.drop) return null;
  const flags = dnsPacket.AUTHORITATIVE_ANSWER | rd;
  if (!entry) return { ...base, flags: flags | RCODES.NXDOMAIN };
  if (entry.rcode === 'SERVFAIL') return { ...base, flags: flags | RCODES.SERVFAIL };
  const wantsAd = opt?.flag_do === true || ((query.flags ?? 0) & dnsPacket.AUTHENTIC_DATA) !== 0;
  const secured = flags | (entry.secure && wantsAd ? dnsPacket.AUTHENTIC_DATA : 0);
  if (entry.rcode === 'NXDOMAIN') return { ...base, flags: secured | RCODES.NXDOMAIN };

  const answer = { ...base, flags: secured, answers: recordsOf(entry, question) };
  if (transport === 'tcp') return answer;
  const limit = Math.max(PLAIN_UDP_SIZE, opt?.udpPayloadSize ?? 0);
  if (entry.truncate || dnsPacket.encodingLength(answer) > limit) {
    return { ...base, flags: secured | dnsPacket.TRUNCATED_RESPONSE };
  }
  return answer;
}

function bindUdp(port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    // A daemon looking up a thousand new domains at once sends a burst of queries; with the
    // default receive buffer (about 200 KB) a busy process drops some, and their lookups time out.
    const udp = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
    udp.once('error', reject);
    udp.bind(port, '127.0.0.1', () => {
      udp.off('error', reject);
      resolve(udp);
    });
  });
}

function listenTcp(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const tcp = createServer();
    tcp.once('error', reject);
    tcp.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      tcp.off('error', reject);
      resolve(tcp);
    });
  });
}

// UDP and TCP must share one port number, so take UDP's and retry if TCP's twin is taken.
async function bindBoth(): Promise<{ udp: UdpSocket; tcp: Server; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const udp = await bindUdp(0);
    const port = udp.address().port;
    try {
      return { udp, tcp: await listenTcp(port), port };
    } catch (err) {
      await new Promise<void>((r) => udp.close(() => r()));
      if (attempt >= 20) throw err;
    }
  }
}

export async function startDns(zone: Zone): Promise<TestDns> {
  const { udp, tcp, port } = await bindBoth();
  const queries: DnsQuery[] = [];
  const changed = new Condition();
  const sockets = new Set<Socket>();

  const handle = (msg: Buffer, transport: DnsQuery['transport']): dnsPacket.Packet | null => {
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return null;
    }
    const flags = query.flags ?? 0;
    const opt = optOf(query);
    for (const q of query.questions ?? []) {
      queries.push({
        name: normalise(q.name), type: q.type, transport,
        recursionDesired: (flags & dnsPacket.RECURSION_DESIRED) !== 0,
        authenticData: (flags & dnsPacket.AUTHENTIC_DATA) !== 0,
        dnssecOk: opt?.flag_do === true,
        udpPayloadSize: opt?.udpPayloadSize,
      });
      changed.notify();
    }
    return respond(query, zone, transport);
  };

  udp.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    const reply = handle(msg, 'udp');
    if (reply) udp.send(dnsPacket.encode(reply), rinfo.port, rinfo.address);
  });

  tcp.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const len = pending.readUInt16BE(0);
        const reply = handle(pending.subarray(2, 2 + len), 'tcp');
        pending = pending.subarray(2 + len);
        if (reply) socket.write(dnsPacket.streamEncode(reply));
      }
    });
  });

  return {
    server: `127.0.0.1:${port}`,
    port,
    zone,
    queries,
    waitForQuery(pred, timeoutMs = 15000) {
      return changed.until(
        () => queries.find(pred),
        timeoutMs,
        () => `no matching DNS query; got ${JSON.stringify(queries)}`,
      );
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        new Promise<void>((r) => tcp.close(() => r())),
      ]);
    },
  };
}
