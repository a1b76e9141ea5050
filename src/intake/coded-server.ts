// smtp-server with ENHANCEDSTATUSCODES on, where a reply whose text already starts with an
// enhanced status code of its class (every refusal Impulse writes) is sent as written: the
// library would otherwise put its own code from a generic table in front of Impulse's.
import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';

const LEADING_CODE = /^([245])\.\d{1,3}\.\d{1,3} /;

class CodedConnection extends SMTPConnection {
  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    const own = typeof data === 'string' ? LEADING_CODE.exec(data) : null;
    super.send(code, data, own && own[1] === String(code)[0] ? false : context);
  }
}

export class CodedServer extends SMTPServer {
  // As SMTPServer.connect, with the connection above.
  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new CodedConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    connection.init();
  }
}
