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
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { Condition } from './wait.js';

export type ZoneEntry = {
  mx?: Array<{ preference: number; exchange: string }>;
  a?: string[];
  aaaa?: string[];
  rcode?: 'NXDOMAIN' | 'SERVFAIL';
  drop?: boolean;
};

// Keyed by lowercase name without trailing dot; read on every query so tests can change it live.
export type Zone = Record<string, ZoneEntry>;

export type DnsQuery = { name: string; type: string; transport: 'udp' | 'tcp' };

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

// Returns null when the query must go unanswered.
function respond(query: dnsPacket.DecodedPacket, zone: Zone): dnsPacket.Packet | null {
  const rd = (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  const base = { type: 'response' as const, id: query.id ?? 0, questions: query.questions ?? [] };
  const question = query.questions?.[0];
  if (!question) return { ...base, flags: rd | RCODES.FORMERR };

  const entry = zone[normalise(question.name)];
  if (entry?.drop) return null;
  const flags = dnsPacket.AUTHORITATIVE_ANSWER | rd;
  if (!entry) return { ...base, flags: flags | RCODES.NXDOMAIN };
  if (entry.rcode) return { ...base, flags: flags | RCODES[entry.rcode] };

  const owner = { name: question.name, ttl: TTL, class: 'IN' as const };
  const answers: dnsPacket.Answer[] = [];
  if (question.type === 'MX') {
    for (const mx of entry.mx ?? []) answers.push({ ...owner, type: 'MX', data: { ...mx } });
  } else if (question.type === 'A') {
    for (const ip of entry.a ?? []) answers.push({ ...owner, type: 'A', data: ip });
  } else if (question.type === 'AAAA') {
    for (const ip of entry.aaaa ?? []) answers.push({ ...owner, type: 'AAAA', data: ip });
  }
  return { ...base, flags, answers };
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
    for (const q of query.questions ?? []) {
      const record = { name: normalise(q.name), type: q.type, transport };
      queries.push(record);
      changed.notify();
    }
    return respond(query, zone);
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
