// One DNS message exchanged with one server over UDP or TCP within a deadline: the first reply
// carrying the query's id and question is taken, anything else arriving on the socket is ignored.
import { createSocket } from 'node:dgram';
import { isIPv6, connect } from 'node:net';
import * as dnsPacket from 'dns-packet';

export interface DnsServer {
  host: string;
  port: number;
}

type Exchanged =
  | { kind: 'reply'; packet: dnsPacket.DecodedPacket }
  /** `code` as node's resolver names it (ETIMEOUT, ECONNREFUSED, EBADRESP) or the socket's error code. */
  | { kind: 'failed'; code: string };

type Transport = 'udp' | 'tcp';

function decode(bytes: Buffer): dnsPacket.DecodedPacket | undefined {
  try {
    return dnsPacket.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Settles once, and runs `cleanup` then, however the exchange ended. */
function settler(resolve: (e: Exchanged) => void, timeoutMs: number, cleanup: () => void): (e: Exchanged) => void {
  let done = false;
  const finish = (e: Exchanged): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    cleanup();
    resolve(e);
  };
  const timer = setTimeout(() => finish({ kind: 'failed', code: 'ETIMEOUT' }), timeoutMs);
  return finish;
}

function exchangeUdp(server: DnsServer, message: Buffer, accept: (p: dnsPacket.DecodedPacket) => boolean, timeoutMs: number): Promise<Exchanged> {
  return new Promise((resolve) => {
    const socket = createSocket(isIPv6(server.host) ? 'udp6' : 'udp4');
    const finish = settler(resolve, timeoutMs, () => socket.close());
    // Connected, so that only the server's datagrams arrive and a closed port shows as ECONNREFUSED.
    socket.on('error', (err: NodeJS.ErrnoException) => finish({ kind: 'failed', code: err.code ?? 'EIO' }));
    socket.on('message', (bytes: Buffer) => {
      // A stray or forged datagram is dropped, as resolvers do, rather than failing the query.
      const packet = decode(bytes);
      if (packet && accept(packet)) finish({ kind: 'reply', packet });
    });
    socket.connect(server.port, server.host, () => {
      socket.send(message, (err) => {
        if (err) finish({ kind: 'failed', code: (err as NodeJS.ErrnoException).code ?? 'EIO' });
      });
    });
  });
}

function exchangeTcp(server: DnsServer, message: Buffer, accept: (p: dnsPacket.DecodedPacket) => boolean, timeoutMs: number): Promise<Exchanged> {
  return new Promise((resolve) => {
    const socket = connect({ host: server.host, port: server.port });
    const finish = settler(resolve, timeoutMs, () => socket.destroy());
    let pending = Buffer.alloc(0);
    socket.on('error', (err: NodeJS.ErrnoException) => finish({ kind: 'failed', code: err.code ?? 'EIO' }));
    socket.on('close', () => finish({ kind: 'failed', code: 'ECONNRESET' }));
    socket.on('connect', () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(message.length);
      socket.write(Buffer.concat([length, message]));
    });
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (pending.length < 2 || pending.length < 2 + pending.readUInt16BE(0)) return;
      // On a stream of our own nobody else writes: a reply that does not match is a broken server.
      const packet = decode(pending.subarray(2, 2 + pending.readUInt16BE(0)));
      finish(packet && accept(packet) ? { kind: 'reply', packet } : { kind: 'failed', code: 'EBADRESP' });
    });
  });
}

export function exchange(
  transport: Transport, server: DnsServer, message: Buffer, accept: (p: dnsPacket.DecodedPacket) => boolean, timeoutMs: number,
): Promise<Exchanged> {
  return transport === 'udp' ? exchangeUdp(server, message, accept, timeoutMs) : exchangeTcp(server, message, accept, timeoutMs);
}
