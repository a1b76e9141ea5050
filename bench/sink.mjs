// The counting sink: the remote MX hosts of a benchmark. It runs as its own process (forked by
// startSink below) so its event loop does not share one with the injector, listens on one port of
// several 127.0.0.x addresses, and keeps, per message, the arrival time, the address it arrived
// at, the connection and the X-Bench-Id / X-Bench-Ts headers. Nothing is logged per message.
//
// Over IPC the parent asks: { op: 'wait', prefix, count, timeoutMs } (resolves when `count`
// unique ids of that prefix have arrived, or at the timeout) and { op: 'summary', prefix,
// accepted, since } (figures for that prefix; `accepted` is the list of sequence numbers the relay
// acknowledged, to name the lost ones; `since`, the injection's start, is where the delivery
// curve's first bucket begins) and { op: 'silent' } (connections open on the silent addresses now,
// and accepted there in all).
//
// Four behaviours make some addresses unlike a plain MX: `tarpit` holds every MAIL reply,
// `rateLimit` answers Gmail's 421 4.7.28 to a source address that sends faster than it allows,
// `latency` greets `greetMs` late and answers every end of DATA `dataMs` late, as a real
// receiver does (W5), and `silent` accepts the connection and never greets (W7). Silent addresses
// are bare TCP listeners, not SMTP servers, so that ten thousand connections cost the sink little.
import { fork } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { SMTPServer } from 'smtp-server';

const SELF = fileURLToPath(import.meta.url);
// The headers we need sit at the top; the daemon adds a Received header above them.
const HEADER_SCAN_BYTES = 8192;
// The delivery curve's resolution: coarse enough that a bucket at 50 msg/s holds hundreds of
// messages, fine enough to show a sender stepping its rate down and back up.
const CURVE_BUCKET_MS = 10_000;
// The silent listeners' accept queue; the kernel caps it at net.core.somaxconn. A daemon opening
// thousands of connections at once must not find it full and wait out SYN retries.
const SILENT_BACKLOG = 4096;
// Gmail's text, so that the daemon's bounce classes and shaping rules see what they would see there.
const RATE_LIMITED = (ip) => `4.7.28 [${ip}] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.`;

/** Starts the sink process; resolves once every address listens. */
export function startSink({ hosts, port, tarpit = {}, rateLimit = {}, latency = {}, silent = {} }) {
  const child = fork(SELF, [JSON.stringify({ hosts, port, tarpit, rateLimit, latency, silent })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map();
  let nextId = 0;
  let onReady;
  const ready = new Promise((resolve, reject) => {
    onReady = resolve;
    child.once('exit', (code, signal) => reject(new Error(`sink exited during startup (code ${code}, signal ${signal})`)));
  });
  child.on('message', (msg) => {
    if (msg.op === 'ready') return onReady();
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    p?.(msg.result);
  });
  const ask = (req) => new Promise((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    child.send({ ...req, id });
  });
  return ready.then(() => ({
    pid: child.pid,
    waitFor: (prefix, count, timeoutMs) => ask({ op: 'wait', prefix, count, timeoutMs }),
    summary: (prefix, accepted, since) => ask({ op: 'summary', prefix, accepted, since }),
    silent: () => ask({ op: 'silent' }),
    close: () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  }));
}

const percentile = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] : null);

function benchHeaders(head) {
  const text = head.toString('latin1');
  const id = /^X-Bench-Id: *(\S+)/im.exec(text)?.[1];
  const ts = /^X-Bench-Ts: *([\d.]+)/im.exec(text)?.[1];
  return { id, ts: ts === undefined ? NaN : Number(ts), signed: /^DKIM-Signature:/im.test(text) };
}

/** Listeners that accept and then say nothing, counting the connections open on them. */
function silentListeners(hosts = [], port) {
  const count = { open: 0, accepted: 0 };
  const servers = hosts.map((host) => new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      count.open++;
      count.accepted++;
      // A client that gives up resets the connection: that is its close, not the sink's error.
      socket.on('error', () => {});
      socket.on('close', () => count.open--);
    });
    server.once('error', reject);
    server.listen({ port, host, backlog: SILENT_BACKLOG }, () => resolve(server));
  }));
  return { count, servers };
}

function serve({ hosts, port, tarpit, rateLimit, latency, silent }) {
  const tarpitHosts = new Set(tarpit.hosts ?? []);
  const slowHosts = new Set(latency.hosts ?? []);
  const limitedHosts = new Set(rateLimit.hosts ?? []);
  // Per source address, the times of the messages accepted in the last second, oldest first. One
  // window per source over all the limited addresses, as a provider with several MX hosts
  // counts a sending IP's mail wherever it lands.
  const windows = new Map();
  // Per prefix: arrival records and the count of each sequence number seen.
  const byPrefix = new Map();
  const connections = new Map();
  let connectionCount = 0;
  let waiters = [];
  const stalls = new Set();

  const bucket = (prefix) => {
    let b = byPrefix.get(prefix);
    if (!b) byPrefix.set(prefix, (b = { seen: new Map(), arrivals: [], deferred: [] }));
    return b;
  };

  const settleWaiters = () => {
    waiters = waiters.filter((w) => {
      if (bucket(w.prefix).seen.size < w.count) return true;
      clearTimeout(w.timer);
      w.reply({ arrived: bucket(w.prefix).seen.size, timedOut: false });
      return false;
    });
  };

  /**
   * Whether a message from this source would go beyond `rateLimit.perSecond` accepted in the
   * last second; if not, it is counted as accepted. A sliding window, not a per-second counter,
   * so that a burst straddling a second's boundary is not let through twice over.
   */
  const overLimit = (session, at) => {
    if (!limitedHosts.has(session.localAddress)) return false;
    let w = windows.get(session.remoteAddress);
    if (!w) windows.set(session.remoteAddress, (w = []));
    while (w.length && w[0] <= at - 1000) w.shift();
    if (w.length >= rateLimit.perSecond) return true;
    w.push(at);
    return false;
  };

  const idOf = (head) => {
    const { id, ts, signed } = benchHeaders(head);
    if (!id) return null;
    const dot = id.lastIndexOf('.');
    return { prefix: id.slice(0, dot), seq: Number(id.slice(dot + 1)), ts, signed };
  };

  const defer = (head, at) => {
    const m = idOf(head);
    if (m) bucket(m.prefix).deferred.push(at);
  };

  const record = (session, head, at) => {
    const m = idOf(head);
    if (!m) return;
    const { prefix, seq, ts, signed } = m;
    const b = bucket(prefix);
    b.seen.set(seq, (b.seen.get(seq) ?? 0) + 1);
    b.arrivals.push({ at, ts, seq, signed, conn: session.id, local: session.localAddress, remote: session.remoteAddress });
    const c = connections.get(session.id);
    if (c) c.messages++;
    settleWaiters();
  };

  const stall = (ms) => new Promise((resolve) => {
    const timer = setTimeout(() => (stalls.delete(timer), resolve()), ms);
    stalls.add(timer);
  });

  const options = {
    logger: false,
    disableReverseLookup: true,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideSTARTTLS: true,
    banner: 'bench sink',
    size: 100 * 1024 * 1024,
    maxClients: 100000,
    socketTimeout: 600_000,
    onConnect(session, cb) {
      connectionCount++;
      connections.set(session.id, { local: session.localAddress, remote: session.remoteAddress, messages: 0 });
      // smtp-server sends its 220 once this callback is called.
      if (slowHosts.has(session.localAddress) && latency.greetMs > 0) stall(latency.greetMs).then(() => cb());
      else cb();
    },
    onMailFrom(_address, session, cb) {
      if (tarpitHosts.has(session.localAddress)) stall(tarpit.ms).then(() => cb());
      else cb();
    },
    onData(stream, session, cb) {
      const chunks = [];
      let kept = 0;
      stream.on('data', (chunk) => {
        if (kept < HEADER_SCAN_BYTES) {
          chunks.push(chunk);
          kept += chunk.length;
        }
      });
      stream.on('end', () => {
        const at = Date.now();
        const head = Buffer.concat(chunks);
        // Decided at the end of DATA, as Gmail does with 4.7.28: the sender has spent the
        // transfer, as it would there, and the message's X-Bench-Id is known, so each 421 is
        // counted for its run. Refused at RCPT, a 421 could not be told apart by run.
        if (overLimit(session, at)) {
          defer(head, at);
          // smtp-server sends a 421 and then closes the session, as a real receiver does.
          return cb(Object.assign(new Error(RATE_LIMITED(session.remoteAddress)), { responseCode: 421 }));
        }
        record(session, head, at);
        if (slowHosts.has(session.localAddress) && latency.dataMs > 0) stall(latency.dataMs).then(() => cb(null, 'Ok'));
        else cb(null, 'Ok');
      });
    },
  };

  const servers = hosts.map((host) => {
    const server = new SMTPServer(options);
    server.on('error', (err) => console.error(`[sink ${host}] ${err.message}`));
    return new Promise((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(port, host, () => resolve(server));
    });
  });

  /**
   * Accepted (250, duplicates included) and deferred (421) per CURVE_BUCKET_MS since `since`,
   * every bucket up to the last event present even when empty, and the accepted rate over the
   * second half of [since, last acceptance]: where a sender that adapts should have settled.
   */
  const curveOf = (b, since) => {
    // Loops, not Math.min(...list): a W4 run's million arrivals would overflow the call stack.
    let first = Infinity;
    let last = -Infinity;
    let lastAccepted = -Infinity;
    for (const a of b.arrivals) {
      first = Math.min(first, a.at);
      lastAccepted = Math.max(lastAccepted, a.at);
    }
    for (const at of b.deferred) {
      first = Math.min(first, at);
      last = Math.max(last, at);
    }
    last = Math.max(last, lastAccepted);
    const t0 = Number.isFinite(since) ? since : first;
    if (!Number.isFinite(last)) return { curve: [], steadyRate: null };
    const curve = Array.from({ length: Math.floor((last - t0) / CURVE_BUCKET_MS) + 1 }, (_, i) => ({ t: (i * CURVE_BUCKET_MS) / 1000, accepted: 0, deferred: 0 }));
    const slot = (at) => curve[Math.max(0, Math.floor((at - t0) / CURVE_BUCKET_MS))];
    for (const a of b.arrivals) slot(a.at).accepted++;
    for (const at of b.deferred) slot(at).deferred++;
    const mid = t0 + (lastAccepted - t0) / 2;
    let steady = 0;
    for (const a of b.arrivals) if (a.at >= mid) steady++;
    return { curve, steadyRate: lastAccepted > mid ? steady / ((lastAccepted - mid) / 1000) : null };
  };

  const summary = (prefix, accepted, since) => {
    const b = bucket(prefix);
    let duplicates = 0;
    for (const n of b.seen.values()) duplicates += n - 1;
    const lost = accepted.filter((seq) => !b.seen.has(seq));
    const firstOf = new Map();
    for (const a of b.arrivals) if (!firstOf.has(a.seq)) firstOf.set(a.seq, a);
    const latencies = [...firstOf.values()].map((a) => a.at - a.ts).filter(Number.isFinite).sort((x, y) => x - y);
    // Per second of injection (by X-Bench-Ts): where in the run the slow messages were sent.
    const bySecond = new Map();
    let t0 = Infinity;
    for (const a of firstOf.values()) if (Number.isFinite(a.ts) && a.ts < t0) t0 = a.ts;
    for (const a of firstOf.values()) {
      if (!Number.isFinite(a.ts)) continue;
      const s = Math.floor((a.ts - t0) / 1000);
      const list = bySecond.get(s);
      if (list) list.push(a.at - a.ts);
      else bySecond.set(s, [a.at - a.ts]);
    }
    const arrivedIn = new Map();
    const connsIn = new Map();
    for (const a of firstOf.values()) {
      const s = Math.floor((a.at - t0) / 1000);
      arrivedIn.set(s, (arrivedIn.get(s) ?? 0) + 1);
      if (!connsIn.has(s)) connsIn.set(s, new Set());
      connsIn.get(s).add(a.conn);
      if (!bySecond.has(s)) bySecond.set(s, []);
    }
    const timeline = [...bySecond].sort(([x], [y]) => x - y).map(([second, l]) => {
      l.sort((x, y) => x - y);
      return { second, n: l.length, arrived: arrivedIn.get(second) ?? 0, conns: connsIn.get(second)?.size ?? 0, p50: percentile(l, 0.5), p99: percentile(l, 0.99), max: l[l.length - 1] };
    });
    const conns = new Set(b.arrivals.map((a) => a.conn));
    const perHost = {};
    for (const a of b.arrivals) perHost[a.local] = (perHost[a.local] ?? 0) + 1;
    let firstArrival = null;
    let lastArrival = null;
    for (const a of b.arrivals) {
      if (firstArrival === null || a.at < firstArrival) firstArrival = a.at;
      if (lastArrival === null || a.at > lastArrival) lastArrival = a.at;
    }
    const { curve, steadyRate } = curveOf(b, since);
    return {
      unique: b.seen.size,
      // Messages whose first copy carried a DKIM-Signature: shows a --dkim run signed them all.
      signed: [...firstOf.values()].filter((a) => a.signed).length,
      deliveries: b.arrivals.length,
      duplicates,
      lost: lost.length,
      lostSample: lost.slice(0, 20),
      firstArrival,
      lastArrival,
      latencyP50: percentile(latencies, 0.5),
      latencyP99: percentile(latencies, 0.99),
      timeline,
      connections: conns.size,
      connectionsOpened: connectionCount,
      perHost,
      sources: [...new Set(b.arrivals.map((a) => a.remote))],
      rateLimited: b.deferred.length,
      curve,
      steadyRate,
      cpuS: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    };
  };

  const mute = silentListeners(silent.hosts, port);
  Promise.all([...servers, ...mute.servers]).then((listening) => {
    process.on('message', (req) => {
      const reply = (result) => process.send({ id: req.id, result });
      if (req.op === 'summary') return reply(summary(req.prefix, req.accepted ?? [], req.since));
      if (req.op === 'silent') return reply({ ...mute.count });
      if (req.op === 'wait') {
        const w = { prefix: req.prefix, count: req.count, reply };
        w.timer = setTimeout(() => {
          waiters = waiters.filter((x) => x !== w);
          reply({ arrived: bucket(req.prefix).seen.size, timedOut: true });
        }, req.timeoutMs);
        waiters.push(w);
        settleWaiters();
      }
    });
    const stop = () => {
      for (const t of stalls) clearTimeout(t);
      for (const s of listening) s.close();
      process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('disconnect', stop);
    process.send({ op: 'ready' });
  }, (err) => {
    console.error(`[sink] cannot listen: ${err.message}`);
    process.exit(1);
  });
}

if (process.argv[1] === SELF && process.send) serve(JSON.parse(process.argv[2]));
