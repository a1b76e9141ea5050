// The load generator: N messages of exactly SIZE bytes over C parallel SMTP connections, each
// connection running one transaction after another with MAIL, RCPT and DATA pipelined. Raw
// sockets keep the client cheap, so the relay, not the injector, sets the pace (the W0 workload
// checks that). Every message carries X-Bench-Id (<prefix>.<seq>) and X-Bench-Ts (epoch ms when
// its transaction started) for the sink.
import { connect } from 'node:net';

const LINE = 78;
// Lines of pseudo-random letters, digits and spaces, as in the shared harness's injector: text
// that compresses about as much as base64 does, not a pattern that flatters a compressing store.
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ';
const FILL = Buffer.alloc(LINE * 1024);
let state = 0x2545f491;
function random() {
  // xorshift32: a fixed sequence, so every run stores the same bytes.
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 2 ** 32;
}
for (let l = 0; l < 1024; l++) {
  // Lines start with a letter, never '.', so the body needs no dot-stuffing and its size on the wire is known.
  for (let i = 0; i < 76; i++) FILL[l * LINE + i] = ALPHABET.charCodeAt(Math.floor(random() * (i === 0 ? 52 : ALPHABET.length)));
  FILL[l * LINE + 76] = 13;
  FILL[l * LINE + 77] = 10;
}
const DOT = Buffer.from('.\r\n');
export const INJECT_FROM_DOMAIN = 'inject.bench.test';
const FROM = `bench@${INJECT_FROM_DOMAIN}`;
const MAX_REFUSED_IN_A_ROW = 50;

function line(bytes) {
  return Buffer.from(`${'x'.repeat(bytes - 2)}\r\n`);
}

/** Message content of exactly `size` bytes (before the final dot). */
function message(id, rcpt, ts, size) {
  const head = Buffer.from(
    `From: <${FROM}>\r\nTo: <${rcpt}>\r\nSubject: bench ${id}\r\n` +
    `Date: ${new Date(ts).toUTCString()}\r\nMessage-ID: <${id}@inject.bench.test>\r\n` +
    `X-Bench-Id: ${id}\r\nX-Bench-Ts: ${ts}\r\n\r\n`,
    'latin1',
  );
  const rest = size - head.length;
  if (rest < 3) throw new Error(`--size ${size} is too small for the headers (${head.length + 3} bytes at least)`);
  const parts = [head];
  // A remainder of 1 or 2 bytes cannot be a line of its own: lengthen the last full line instead.
  const tail = rest % LINE;
  let full = Math.floor(rest / LINE);
  let last = tail;
  if (tail > 0 && tail < 3) {
    full--;
    last = LINE + tail;
  }
  while (full > 0) {
    const take = Math.min(full, FILL.length / LINE);
    parts.push(FILL.subarray(0, take * LINE));
    full -= take;
  }
  if (last > 0) parts.push(line(last));
  parts.push(DOT);
  return Buffer.concat(parts);
}

/** A socket that hands out complete SMTP replies in order. */
function smtpSocket(host, port, timeoutMs) {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    let buf = '';
    let lines = [];
    const replies = [];
    const waiters = [];
    let failure = null;
    const fail = (err) => {
      if (failure) return;
      failure = err;
      for (const w of waiters.splice(0)) w.reject(err);
    };
    sock.setNoDelay(true);
    sock.setTimeout(timeoutMs, () => {
      fail(new Error('reply timeout'));
      sock.destroy();
    });
    sock.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      let eol;
      while ((eol = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, eol).replace(/\r$/, '');
        buf = buf.slice(eol + 1);
        lines.push(l);
        if (l[3] === '-') continue;
        const reply = { code: Number(l.slice(0, 3)) || 0, text: lines.join('\n') };
        lines = [];
        const w = waiters.shift();
        if (w) w.resolve(reply);
        else replies.push(reply);
      }
    });
    sock.on('error', (err) => fail(err));
    sock.on('close', () => fail(new Error('connection closed')));
    sock.once('connect', () => resolve({
      write: (data) => sock.write(data),
      read: () => {
        if (replies.length) return Promise.resolve(replies.shift());
        if (failure) return Promise.reject(failure);
        return new Promise((res, rej) => waiters.push({ resolve: res, reject: rej }));
      },
      end: () => sock.end('QUIT\r\n'),
      destroy: () => sock.destroy(),
    }));
    sock.once('error', reject);
  });
}

/**
 * Injects messages 0..n-1 with recipient rcptOf(seq), connection i into targets[i mod their
 * number] ({ host, port }: the intakes of a cluster's nodes share the load). A 4xx reply or a lost
 * connection puts the message back for another attempt (at most `retries` more); a 5xx counts as
 * failed. Resolves with the acknowledged sequence numbers and the timing of the run.
 */
export async function inject({ targets, n, size, conns, prefix, rcptOf, rate = 0, retries = 3, timeoutMs = 120_000 }) {
  const accepted = [];
  const errors = {};
  const txnMs = [];
  const retryQueue = [];
  const attempts = new Uint8Array(n);
  let next = 0;
  let issued = 0;
  let failed = 0;
  let lastAck = 0;
  const t0 = Date.now();
  const countError = (key) => (errors[key] = (errors[key] ?? 0) + 1);
  let refusedInARow = 0;

  // The next message to send, paced by --rate; null when none is left.
  const take = async () => {
    if (retryQueue.length) return retryQueue.shift();
    if (next >= n) return null;
    const seq = next++;
    if (rate > 0) {
      const due = t0 + (issued++ * 1000) / rate;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    return seq;
  };
  const giveBack = (seq, key) => {
    countError(key);
    if (++attempts[seq] > retries) failed++;
    else retryQueue.push(seq);
  };
  // Every connection's loop ends when nothing is left, but a retry put back by another
  // connection after this one ended must still be sent: loops run until all are settled.
  const settled = () => accepted.length + failed >= n;

  const worker = async (i) => {
    const { host, port } = targets[i % targets.length];
    while (!settled()) {
      let conn;
      try {
        conn = await smtpSocket(host, port, timeoutMs);
        const greeting = await conn.read();
        if (greeting.code !== 220) throw new Error(`greeting ${greeting.code}`);
        conn.write('EHLO inject.bench.test\r\n');
        const ehlo = await conn.read();
        if (ehlo.code !== 250) throw new Error(`EHLO ${ehlo.code}`);
        refusedInARow = 0;
      } catch (err) {
        countError(`connect: ${err.message}`);
        conn?.destroy();
        // A relay that stays unreachable ends the run rather than spinning.
        if (++refusedInARow > MAX_REFUSED_IN_A_ROW) throw new Error(`cannot inject into ${host}:${port}: ${err.message}`);
        if (next >= n && !retryQueue.length) return;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      let seq = null;
      try {
        while ((seq = await take()) !== null) {
          const ts = Date.now();
          const rcpt = rcptOf(seq);
          conn.write(`MAIL FROM:<${FROM}>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`);
          const mail = await conn.read();
          const rcptReply = await conn.read();
          const data = await conn.read();
          if (data.code !== 354) {
            const bad = [mail, rcptReply, data].find((r) => r.code >= 400);
            if (bad.code >= 500) {
              failed++;
              countError(`envelope ${bad.code}`);
            } else giveBack(seq, `envelope ${bad.code}`);
            seq = null;
            conn.write('RSET\r\n');
            await conn.read();
            continue;
          }
          conn.write(message(`${prefix}.${seq}`, rcpt, ts, size));
          const done = await conn.read();
          const s = seq;
          seq = null;
          if (done.code === 250) {
            lastAck = Date.now();
            accepted.push(s);
            txnMs.push(lastAck - ts);
          } else if (done.code >= 500) {
            failed++;
            countError(`data ${done.code}`);
          } else giveBack(s, `data ${done.code}`);
        }
        conn.end();
      } catch (err) {
        if (seq !== null) giveBack(seq, `session: ${err.message}`);
        conn.destroy();
      }
      if (next >= n && !retryQueue.length) return;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(conns, n)) }, (_, i) => worker(i)));
  txnMs.sort((a, b) => a - b);
  return {
    accepted,
    failed,
    errors,
    t0,
    lastAck,
    txnP50: txnMs[Math.floor(txnMs.length / 2)] ?? null,
  };
}
