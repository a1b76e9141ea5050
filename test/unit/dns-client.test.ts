// The DNS client against the loopback DNS server the tests run (startDns), over real UDP and TCP:
// what it asks, what it makes of each kind of answer, and how it gets past silent, refusing or
// lying servers.
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { type DnsResult, type RecordType, createDnsClient } from '../../src/dns/client.js';
import { startDns } from '../helpers/dns.js';

function bindUdp(): Promise<UdpSocket> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.bind(0, '127.0.0.1', () => resolve(socket));
  });
}

// A port nothing listens on: the kernel answers a datagram to it with ICMP port unreachable.
async function closedUdpPort(): Promise<number> {
  const socket = await bindUdp();
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

test('queries ask for recursion and DNSSEC: RD, AD, EDNS0 with DO and a 1232-byte payload', async () => {
  const server = await startDns({ 'd.test': { a: ['192.0.2.1'] } });
  try {
    await createDnsClient({ servers: [server.server], timeout: 1000, tries: 1 }).query('d.test', 'A');
    assert.deepEqual(server.queries, [{
      name: 'd.test', type: 'A', transport: 'udp', recursionDesired: true, authenticData: true, dnssecOk: true, udpPayloadSize: 1232,
    }]);
  } finally {
    await server.close();
  }
});

test('answers, NXDOMAIN and NODATA each carry the AD bit of the answer', async () => {
  const server = await startDns({
    'signed.test': { a: ['192.0.2.1', '192.0.2.2'], secure: true },
    'plain.test': { a: ['192.0.2.3'], mx: [{ preference: 0, exchange: '.' }] },
    'nx.signed.test': { rcode: 'NXDOMAIN', secure: true },
    'empty.signed.test': { secure: true },
  });
  try {
    const client = createDnsClient({ servers: [server.server], timeout: 1000, tries: 1 });
    const table: Array<[string, RecordType, DnsResult<unknown>]> = [
      ['signed.test', 'A', { kind: 'answer', records: ['192.0.2.1', '192.0.2.2'], authenticated: true, ttl: 60 }],
      ['plain.test', 'A', { kind: 'answer', records: ['192.0.2.3'], authenticated: false, ttl: 60 }],
      ['plain.test', 'MX', { kind: 'answer', records: [{ exchange: '.', priority: 0 }], authenticated: false, ttl: 60 }],
      ['nx.signed.test', 'A', { kind: 'nxdomain', authenticated: true }],
      ['nx.plain.test', 'A', { kind: 'nxdomain', authenticated: false }],
      ['empty.signed.test', 'MX', { kind: 'nodata', authenticated: true }],
      ['signed.test', 'TLSA', { kind: 'nodata', authenticated: true }],
      ['plain.test', 'TLSA', { kind: 'nodata', authenticated: false }],
    ];
    for (const [name, type, expected] of table) assert.deepEqual(await client.query(name, type), expected, `${name} ${type}`);
  } finally {
    await server.close();
  }
});

test('a truncated UDP answer is asked again over TCP', async () => {
  const data = Buffer.alloc(64, 1);
  const server = await startDns({ '_25._tcp.mx.test': { tlsa: [{ usage: 2, selector: 0, matchingType: 2, data }], secure: true, truncate: true } });
  try {
    const result = await createDnsClient({ servers: [server.server], timeout: 1000, tries: 1 }).query('_25._tcp.mx.test', 'TLSA');
    assert.deepEqual(result, { kind: 'answer', records: [{ usage: 2, selector: 0, matchingType: 2, data }], authenticated: true, ttl: 60 });
    assert.deepEqual(server.queries.map((q) => q.transport), ['udp', 'tcp']);
  } finally {
    await server.close();
  }
});

test('SERVFAIL gives way to the next server, and is not asked again: the query fails when none is left', async () => {
  const server = await startDns({ 'broken.test': { rcode: 'SERVFAIL' } });
  const good = await startDns({ 'broken.test': { txt: ['v=spf1 -all'] } });
  try {
    const result = await createDnsClient({ servers: [server.server], timeout: 1000, tries: 3 }).query('broken.test', 'TXT');
    assert.deepEqual(result, { kind: 'failed', code: 'ESERVFAIL', reason: `ESERVFAIL from ${server.server}` });
    assert.equal(server.queries.length, 1);
    assert.deepEqual(await createDnsClient({ servers: [server.server, good.server], timeout: 1000, tries: 1 }).query('broken.test', 'TXT'),
      { kind: 'answer', records: ['v=spf1 -all'], authenticated: false, ttl: 60 });
    assert.equal(server.queries.length, 2);
  } finally {
    await server.close();
    await good.close();
  }
});

test('a dropped query is tried again after the timeout, up to `tries` times', async () => {
  const server = await startDns({ 'slow.test': { a: ['192.0.2.7'], drop: true }, 'dead.test': { drop: true } });
  try {
    const client = createDnsClient({ servers: [server.server], timeout: 200, tries: 2 });
    const answered = client.query('slow.test', 'A');
    await server.waitForQuery((q) => q.name === 'slow.test');
    server.zone['slow.test']!.drop = false;
    assert.deepEqual(await answered, { kind: 'answer', records: ['192.0.2.7'], authenticated: false, ttl: 60 });
    assert.equal(server.queries.filter((q) => q.name === 'slow.test').length, 2);

    const started = performance.now();
    assert.deepEqual(await client.query('dead.test', 'A'), { kind: 'failed', code: 'ETIMEOUT', reason: `ETIMEOUT from ${server.server}` });
    assert.ok(performance.now() - started >= 2 * 200 - 5, 'each try waits the whole timeout');
    assert.equal(server.queries.filter((q) => q.name === 'dead.test').length, 2);
  } finally {
    await server.close();
  }
});

test('servers are asked in turn: a closed port or a silent server gives way to the next', async () => {
  const silent = await startDns({ 'd.test': { drop: true } });
  const good = await startDns({ 'd.test': { a: ['192.0.2.9'] } });
  const closed = `127.0.0.1:${await closedUdpPort()}`;
  try {
    const answer = { kind: 'answer', records: ['192.0.2.9'], authenticated: false, ttl: 60 };
    assert.deepEqual(await createDnsClient({ servers: [closed, good.server], timeout: 1000, tries: 1 }).query('d.test', 'A'), answer);
    assert.deepEqual(await createDnsClient({ servers: [silent.server, good.server], timeout: 200, tries: 1 }).query('d.test', 'A'), answer);
    assert.equal(silent.queries.length, 1);
    assert.equal(good.queries.length, 2);

    // A refusing server is not asked again in later rounds; the silent one is.
    const refused = await createDnsClient({ servers: [closed, silent.server], timeout: 100, tries: 2 }).query('d.test', 'A');
    assert.deepEqual(refused, { kind: 'failed', code: 'ETIMEOUT', reason: `ETIMEOUT from ${silent.server}` });
    assert.equal(silent.queries.length, 3);
    assert.deepEqual(await createDnsClient({ servers: [closed], timeout: 1000, tries: 3 }).query('d.test', 'A'),
      { kind: 'failed', code: 'ECONNREFUSED', reason: `ECONNREFUSED from ${closed}` });
  } finally {
    await silent.close();
    await good.close();
  }
});

test('only a reply with the query id and question is taken; garbage and forgeries are ignored', async () => {
  const liar = await bindUdp();
  liar.on('message', (msg, peer) => {
    const query = dnsPacket.decode(msg);
    const question = query.questions![0]!;
    const answer = (id: number, name: string, address: string): Buffer => dnsPacket.encode({
      type: 'response', id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA, questions: [{ ...question, name }],
      answers: [{ type: 'A', name, ttl: 60, class: 'IN', data: address }],
    });
    liar.send(Buffer.from('not dns'), peer.port, peer.address);
    liar.send(answer((query.id! + 1) & 0xffff, question.name, '192.0.2.66'), peer.port, peer.address);
    liar.send(answer(query.id!, 'other.test', '192.0.2.67'), peer.port, peer.address);
    liar.send(answer(query.id!, question.name.toUpperCase(), '192.0.2.1'), peer.port, peer.address);
  });
  try {
    const result = await createDnsClient({ servers: [`127.0.0.1:${liar.address().port}`], timeout: 1000, tries: 1 }).query('d.test', 'A');
    assert.deepEqual(result, { kind: 'answer', records: ['192.0.2.1'], authenticated: true, ttl: 60 });
  } finally {
    await new Promise<void>((resolve) => liar.close(() => resolve()));
  }
});

test('servers are given as ip, ip:port or [ip]:port; a host name is refused', () => {
  for (const servers of [['192.0.2.53'], ['192.0.2.53:5353'], ['2001:db8::53'], ['[2001:db8::53]:5353']]) {
    assert.doesNotThrow(() => createDnsClient({ servers, timeout: 1000, tries: 1 }), servers[0]);
  }
  for (const bad of ['dns.example', 'dns.example:53', '192.0.2.53:x', '192.0.2.53:53:53']) {
    assert.throws(() => createDnsClient({ servers: [bad], timeout: 1000, tries: 1 }), { message: `DNS server ${bad} is not an IP address (ip, ip:port or [ip]:port)` });
  }
});
