// Proves the helpers behave like the real things they stand in for, so a daemon test failure
// points at the daemon rather than at the harness.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { promises as dns } from 'node:dns';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DelayedError, Queue, Worker } from 'bullmq';
import * as dnsPacket from 'dns-packet';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createDnsClient } from '../src/dns/client.js';
import { startEmbeddedRedis } from '../src/store/embedded-redis.js';
import { startDns, type Zone } from './helpers/dns.js';
import { readJobs, embeddedRedisSocket } from './helpers/jobs.js';
import { startRedis } from './helpers/redis.js';
import { startSink } from './helpers/sink.js';
import { makeMessage, sendMail, sendMany, smtpDialogue } from './helpers/smtp-client.js';

function refused(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(undefined);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
  });
}

test('dns server answers node resolver like an authoritative server', async () => {
  const zone: Zone = {
    'example.test': {
      mx: [
        { preference: 20, exchange: 'mx2.example.test' },
        { preference: 10, exchange: 'mx1.example.test' },
      ],
    },
    'mx1.example.test': { a: ['127.0.0.2'], aaaa: ['::1'] },
    'nullmx.test': { mx: [{ preference: 0, exchange: '.' }] },
    'servfail.test': { rcode: 'SERVFAIL' },
    'blackhole.test': { drop: true },
  };
  const server = await startDns(zone);
  try {
    const r = new dns.Resolver({ timeout: 500, tries: 1 });
    r.setServers([server.server]);
    const mx = await r.resolveMx('example.test');
    // Node.js 24 adds type: 'MX' to each record; what the zone says is exchange and priority.
    const shape = (records: Array<{ exchange: string; priority: number }>) => records.map(({ exchange, priority }) => ({ exchange, priority }));
    assert.deepEqual(
      shape(mx).sort((a, b) => a.priority - b.priority),
      [{ exchange: 'mx1.example.test', priority: 10 }, { exchange: 'mx2.example.test', priority: 20 }],
    );
    assert.deepEqual(await r.resolve4('mx1.example.test'), ['127.0.0.2']);
    assert.deepEqual(await r.resolve4('mx1.example.test', { ttl: true }), [{ address: '127.0.0.2', ttl: 60 }]);
    assert.deepEqual(await r.resolve6('mx1.example.test'), ['::1']);
    assert.deepEqual(shape(await r.resolveMx('nullmx.test')), [{ exchange: '', priority: 0 }]);
    await assert.rejects(r.resolveMx('absent.test'), { code: 'ENOTFOUND' });
    await assert.rejects(r.resolveMx('servfail.test'), { code: 'ESERVFAIL' });
    await assert.rejects(r.resolveMx('blackhole.test'), { code: 'ETIMEOUT' });
    await assert.rejects(r.resolveMx('mx1.example.test'), { code: 'ENODATA' });
    await assert.rejects(r.resolve6('example.test'), { code: 'ENODATA' });

    zone['late.test'] = { a: ['127.0.0.3'] };
    assert.deepEqual(await r.resolve4('late.test'), ['127.0.0.3']);
    await server.waitForQuery((q) => q.name === 'late.test' && q.type === 'A');
    assert.ok(server.queries.some((q) => q.name === 'blackhole.test' && q.type === 'MX'));
  } finally {
    await server.close();
  }
});

// One query as a plain client sends it, without EDNS; the raw answer, so the wire format can be read.
function rawQuery(port: number, name: string, type: dnsPacket.RecordType, flags = dnsPacket.RECURSION_DESIRED): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.once('message', (msg) => {
      socket.close();
      resolve(msg);
    });
    socket.send(dnsPacket.encode({ type: 'query', id: 7, flags, questions: [{ type, name }] }), port, '127.0.0.1');
  });
}

test('dns server answers the DNS client as a DNSSEC-validating resolver would', async () => {
  const tlsaData = Buffer.alloc(32, 0xab);
  const longTxt = `v=DKIM1; k=rsa; p=${'A'.repeat(400)}`;
  const zone: Zone = {
    'signed.test': { a: ['127.0.0.2'], mx: [{ preference: 10, exchange: 'mx.signed.test' }], txt: ['v=STSv1; id=20240101', longTxt], secure: true },
    'plain.test': { a: ['127.0.0.3'] },
    'gone.signed.test': { rcode: 'NXDOMAIN', secure: true },
    'empty.signed.test': { secure: true },
    '_25._tcp.mx.signed.test': { tlsa: [{ usage: 3, selector: 1, matchingType: 1, data: tlsaData }], secure: true },
    'big.signed.test': { a: Array.from({ length: 100 }, (_, i) => `127.0.1.${i}`), secure: true },
    'tc.signed.test': { a: ['127.0.0.4'], secure: true, truncate: true },
    'servfail.signed.test': { rcode: 'SERVFAIL', secure: true },
  };
  const server = await startDns(zone);
  try {
    const client = createDnsClient({ servers: [server.server], timeout: 1000, tries: 1 });
    assert.deepEqual(await client.query('signed.test', 'A'), { kind: 'answer', records: ['127.0.0.2'], authenticated: true, ttl: 60 });
    assert.deepEqual(await client.query('plain.test', 'A'), { kind: 'answer', records: ['127.0.0.3'], authenticated: false, ttl: 60 });
    assert.deepEqual(await client.query('signed.test', 'MX'),
      { kind: 'answer', records: [{ exchange: 'mx.signed.test', priority: 10 }], authenticated: true, ttl: 60 });
    assert.deepEqual(await client.query('gone.signed.test', 'A'), { kind: 'nxdomain', authenticated: true });
    assert.deepEqual(await client.query('absent.signed.test', 'A'), { kind: 'nxdomain', authenticated: false });
    assert.deepEqual(await client.query('empty.signed.test', 'TLSA'), { kind: 'nodata', authenticated: true });
    assert.deepEqual(await client.query('plain.test', 'TXT'), { kind: 'nodata', authenticated: false });
    assert.deepEqual(await client.query('servfail.signed.test', 'A'),
      { kind: 'failed', code: 'ESERVFAIL', reason: `ESERVFAIL from ${server.server}` });
    assert.deepEqual(await client.query('_25._tcp.mx.signed.test', 'TLSA'),
      { kind: 'answer', records: [{ usage: 3, selector: 1, matchingType: 1, data: tlsaData }], authenticated: true, ttl: 60 });

    // A TXT record longer than 255 bytes is several character-strings: node's resolver lists them
    // (over TCP: the answer is over 512 bytes), the client joins them.
    const txt = await client.query('signed.test', 'TXT');
    assert.ok(txt.kind === 'answer');
    assert.deepEqual(txt.records, ['v=STSv1; id=20240101', longTxt]);
    const r = new dns.Resolver({ timeout: 1000, tries: 1 });
    r.setServers([server.server]);
    const strings = await r.resolveTxt('signed.test');
    assert.deepEqual(strings.map((chunks) => chunks.map((c) => Buffer.byteLength(c))), [[20], [255, 163]]);
    assert.equal(strings[1]!.join(''), longTxt);

    // TLSA RDATA as RFC 6698 §2.1 lays it out: usage, selector, matching type, then the data.
    const rdata = Buffer.concat([Buffer.from([0, 35, 3, 1, 1]), tlsaData]);
    const wire = await rawQuery(server.port, '_25._tcp.mx.signed.test', 'TLSA');
    assert.ok(wire.includes(Buffer.concat([Buffer.from([0, 52, 0, 1, 0, 0, 0, 60]), rdata])), wire.toString('hex'));

    // AD only for a query that asked for it with DO or AD (RFC 6840 §5.7, §5.8).
    assert.equal(dnsPacket.decode(wire).flag_ad, false);
    const withAd = dnsPacket.decode(await rawQuery(server.port, 'gone.signed.test', 'A', dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA));
    assert.deepEqual([withAd.flag_ad, (withAd.flags ?? 0) & 0xf], [true, 3]);

    // Truncated over UDP (forced, or over the 1232 bytes the client offers): the client asks again over TCP.
    const before = server.queries.length;
    assert.deepEqual(await client.query('tc.signed.test', 'A'), { kind: 'answer', records: ['127.0.0.4'], authenticated: true, ttl: 60 });
    const big = await client.query('big.signed.test', 'A');
    assert.ok(big.kind === 'answer' && big.records.length === 100 && big.authenticated);
    assert.deepEqual(server.queries.slice(before).map((q) => `${q.name} ${q.transport}`),
      ['tc.signed.test udp', 'tc.signed.test tcp', 'big.signed.test udp', 'big.signed.test tcp']);
    assert.deepEqual(dnsPacket.decode(await rawQuery(server.port, 'tc.signed.test', 'A')).flag_tc, true);
  } finally {
    await server.close();
  }
});

test('sink stores exactly the bytes sent, with envelope and peer address', async () => {
  const sink = await startSink({ host: '127.0.0.2' });
  try {
    const raw = makeMessage({
      from: 'sender@origin.test',
      to: ['rcpt@dest.test'],
      body: 'line one\n.starts with a dot\n..two dots\nlast',
    });
    const result = await sendMail({
      host: sink.host,
      port: sink.port,
      from: 'sender@origin.test',
      to: ['rcpt@dest.test'],
      raw,
      localAddress: '127.0.0.3',
      name: 'upstream.test',
    });
    assert.match(result.response, /^250 /);
    assert.deepEqual(result.accepted, ['rcpt@dest.test']);

    const [message] = await sink.waitForMessages(1);
    assert.equal(message!.raw.toString(), raw);
    assert.equal(message!.mailFrom, 'sender@origin.test');
    assert.deepEqual(message!.rcptTo, ['rcpt@dest.test']);
    assert.equal(message!.remoteAddress, '127.0.0.3');
    assert.equal(message!.helo, 'upstream.test');

    await sendMail({ host: sink.host, port: sink.port, from: '', to: ['bounce@dest.test'], raw });
    const messages = await sink.waitForRecipients(['bounce@dest.test']);
    assert.equal(messages[0]!.mailFrom, '');
    assert.equal(sink.connections, 2);
  } finally {
    await sink.close();
  }
});

test('sink behaviour replies reach the client verbatim', async () => {
  const sink = await startSink({
    host: '127.0.0.2',
    behaviour: ({ stage, address, session, message }) => {
      if (stage === 'connect' && session.remoteAddress === '127.0.0.5') return { code: 554, message: '5.7.1 go away' };
      if (stage === 'data' && message!.rcptTo.includes('big@dest.test')) return { code: 552, message: '5.3.4 too big' };
      if (stage === 'rcpt' && address === 'later@dest.test') return { code: 451, message: '4.3.0 try later' };
      if (stage === 'rcpt' && address === 'gone@dest.test') return { code: 550, message: '5.1.1 no such user' };
      return undefined;
    },
  });
  try {
    const raw = makeMessage({ from: 'a@origin.test', to: ['later@dest.test'] });
    await assert.rejects(
      sendMail({ host: sink.host, port: sink.port, from: 'a@origin.test', to: ['later@dest.test'], raw }),
      { responseCode: 451, response: '451 4.3.0 try later' },
    );

    const partial = await sendMail({
      host: sink.host,
      port: sink.port,
      from: 'a@origin.test',
      to: ['ok@dest.test', 'gone@dest.test'],
      raw,
    });
    assert.deepEqual(partial.accepted, ['ok@dest.test']);
    assert.deepEqual(partial.rejected, ['gone@dest.test']);
    assert.deepEqual((await sink.waitForMessages(1))[0]!.rcptTo, ['ok@dest.test']);

    const replies = await smtpDialogue({
      host: sink.host,
      port: sink.port,
      lines: [
        'EHLO raw.test',
        'MAIL FROM:<a@origin.test>',
        'RCPT TO:<gone@dest.test>',
        'RCPT TO:<ok@dest.test>',
        'DATA',
        'Subject: x\r\n\r\nhi',
        '.',
        'QUIT',
      ],
    });
    assert.match(replies[0]!, /^220 /);
    assert.match(replies[1]!, /^250-.*\n250 /s);
    assert.equal(replies[3], '550 5.1.1 no such user');
    assert.match(replies[5]!, /^354 /);
    assert.match(replies[6]!, /^250 /);
    assert.match(replies[7]!, /^221 /);

    const refusedAtConnect = await smtpDialogue({
      host: sink.host,
      port: sink.port,
      localAddress: '127.0.0.5',
      lines: ['EHLO a'],
    });
    assert.deepEqual(refusedAtConnect, ['554 5.7.1 go away']);
    await assert.rejects(
      sendMail({ host: sink.host, port: sink.port, from: 'a@origin.test', to: ['big@dest.test'], raw }),
      { responseCode: 552, response: '552 5.3.4 too big' },
    );
    assert.equal(sink.messages.length, 2);
    assert.deepEqual(
      sink.rejections.map((r) => `${r.stage} ${r.code}`),
      ['rcpt 451', 'rcpt 550', 'rcpt 550', 'connect 554', 'data 552'],
    );
  } finally {
    await sink.close();
  }
});

test('a closed sink refuses connections and can come back on the same port', async () => {
  const first = await startSink({ host: '127.0.0.2' });
  // An idle client must not keep the "down" sink alive.
  const idle = connect({ host: first.host, port: first.port });
  const idleClosed = new Promise((resolve) => idle.once('close', resolve));
  idle.on('error', () => undefined);
  await first.waitForConnections(1);
  await first.close();
  await idleClosed;
  assert.equal(await refused(first.host, first.port), 'ECONNREFUSED');

  const second = await startSink({ host: first.host, port: first.port });
  try {
    const raw = makeMessage({ from: 'a@origin.test', to: ['b@dest.test'] });
    await sendMail({ host: second.host, port: second.port, from: 'a@origin.test', to: ['b@dest.test'], raw });
    await second.waitForMessages(1);
  } finally {
    await second.close();
  }
});

test('makeMessage pads to the requested size', () => {
  for (const size of [1000, 1001, 4096, 100_000]) {
    const msg = makeMessage({ from: 'a@origin.test', to: ['b@dest.test'], size });
    assert.equal(Buffer.byteLength(msg), size);
    assert.ok(msg.split('\r\n').every((line) => line.length <= 998));
    assert.ok(!/[^\r]\n/.test(msg));
  }
});

test('redis starts, survives SIGKILL with its AOF, and cleans up', async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true });
  try {
    await client.connect();
    assert.equal(await client.ping(), 'PONG');
    await client.set('harness:key', 'kept');
    await client.quit();

    await redis.kill9();
    assert.equal(await refused('127.0.0.1', redis.port), 'ECONNREFUSED');
    await redis.restart();

    const again = new Redis(redis.url, { lazyConnect: true });
    await again.connect();
    assert.equal(await again.get('harness:key'), 'kept');
    await again.quit();
  } finally {
    if (client.status !== 'end') client.disconnect();
    await redis.stop();
  }
  assert.equal(existsSync(redis.dir), false);
});

test('sink counts simultaneous connections overall and per source address', async () => {
  const sink = await startSink({ host: '127.0.0.2' });
  const open = (localAddress: string) => {
    const s = connect({ host: sink.host, port: sink.port, localAddress });
    s.on('error', () => undefined);
    return s;
  };
  const clients: Socket[] = [];
  try {
    clients.push(open('127.0.0.1'), open('127.0.0.1'), open('127.0.0.1'));
    await sink.waitForConnections(3);
    assert.deepEqual(sink.peakConcurrency(), { total: 3, bySource: { '127.0.0.1': 3 } });
    assert.equal(sink.open, 3);

    // A connection opened after another closed does not raise the peak.
    clients.shift()!.destroy();
    await sink.waitForOpen(2);
    clients.push(open('127.0.0.4'));
    await sink.waitForConnections(4);
    assert.deepEqual(sink.peakConcurrency(), { total: 3, bySource: { '127.0.0.1': 3, '127.0.0.4': 1 } });
  } finally {
    for (const c of clients) c.destroy();
    await sink.close();
  }
  assert.deepEqual(
    sink.connectionLog.map((c) => [c.id, c.remoteAddress, c.closedAt! >= c.openedAt]),
    [[1, '127.0.0.1', true], [2, '127.0.0.1', true], [3, '127.0.0.1', true], [4, '127.0.0.4', true]],
  );
});

test('sendMany spreads messages over a fixed number of sessions and reports each reply', async () => {
  const sink = await startSink({
    host: '127.0.0.2',
    behaviour: ({ stage, message }) =>
      stage === 'data' && message!.rcptTo.includes('big@dest.test') ? { code: 552, message: '5.3.4 too big' } : undefined,
  });
  try {
    const messages = Array.from({ length: 50 }, (_, i) => ({
      from: 'a@origin.test',
      to: [`r${i}@dest.test`],
      raw: makeMessage({ from: 'a@origin.test', to: [`r${i}@dest.test`] }),
    }));
    const replies = await sendMany({ host: sink.host, port: sink.port, messages, connections: 3 });
    assert.equal(replies.length, 50);
    assert.ok(replies.every((r) => /^250 /.test(r)), replies.join('\n'));
    await sink.waitForMessages(50);
    assert.deepEqual(
      sink.messages.map((m) => m.rcptTo[0]).sort(),
      messages.map((m) => m.to[0]).sort(),
    );
    assert.equal(sink.connections, 3);
    assert.equal(sink.peakConcurrency().total, 3);
    assert.equal(new Set(sink.messages.map((m) => m.connectionId)).size, 3);

    const bad = [...messages.slice(0, 5), { from: 'a@origin.test', to: ['big@dest.test'], raw: 'Subject: x\r\n\r\nx' }];
    await assert.rejects(sendMany({ host: sink.host, port: sink.port, messages: bad, connections: 2 }), {
      responseCode: 552,
      response: '552 5.3.4 too big',
    });
    assert.deepEqual(await sendMany({ host: sink.host, port: sink.port, messages: [] }), []);
  } finally {
    await sink.close();
  }
});

test('readJobs lists queued delivery jobs with the due time of deferred ones', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'impulse-jobs-'));
  const redis = await startEmbeddedRedis({ dir, binary: 'redis-server', appendfsync: 'no' }, pino({ level: 'silent' }));
  const conn = new Redis({ path: embeddedRedisSocket(dir), maxRetriesPerRequest: null });
  const queue = new Queue('delivery', { connection: conn, prefix: 'impulse' });
  const workerConn = new Redis({ path: embeddedRedisSocket(dir), maxRetriesPerRequest: null });
  try {
    const data = (qid: string) => ({ qid, domain: 'dest.test', sender: 'a@origin.test', recipients: ['b@dest.test'], receivedAt: 1, attempts: 0 });
    const before = Date.now();
    // The daemon defers by moveToDelayed from inside the processor, which keeps the job's
    // creation timestamp (backdated here so that timestamp + delay would be visibly wrong).
    await queue.add('deliver', data('deferred'), { jobId: 'deferred-0', timestamp: before - 600_000 });
    const retryAt = Date.now() + 3_600_000;
    const deferred = new Promise<void>((resolve) => {
      const worker = new Worker(
        'delivery',
        async (job, token) => {
          await job.moveToDelayed(retryAt, token);
          void worker.close().then(resolve);
          throw new DelayedError();
        },
        { connection: workerConn, prefix: 'impulse' },
      );
    });
    await deferred;
    await queue.add('deliver', data('waiting'), { jobId: 'waiting-0' });
    await queue.add('deliver', data('later'), { jobId: 'later-0', delay: 60_000 });

    const jobs = await readJobs(dir, ['delayed', 'wait']);
    const byId = Object.fromEntries(jobs.map((j) => [j.id, j]));
    assert.deepEqual(Object.keys(byId).sort(), ['deferred-0', 'later-0', 'waiting-0']);
    assert.equal(byId['deferred-0']!.delayUntil, retryAt);
    assert.ok(Math.abs(byId['later-0']!.delayUntil! - (before + 60_000)) < 5_000);
    assert.equal(byId['waiting-0']!.delayUntil, undefined);
    assert.equal(byId['waiting-0']!.data.qid, 'waiting');
    assert.deepEqual((await readJobs(dir, ['active'])), []);
  } finally {
    await queue.close();
    conn.disconnect();
    workerConn.disconnect();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
