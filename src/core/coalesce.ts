// Writes made to one socket in one turn of the event loop, sent in one system call (and, on a
// network, one segment) instead of one each.
import type { Socket } from 'node:net';

/**
 * Every write made to the socket in one turn of the event loop leaves in one system call. A Redis
 * connection's commands (one write each) come from many callbacks run in the same turn; Redis
 * then reads them at once and, with appendfsync always, syncs once for all of them. An SMTP
 * server answers a pipelining client's MAIL, RCPT and DATA one by one; a client writes a body
 * and its final dot separately.
 */
export function batchWrites(socket: Socket): void {
  const write = socket.write;
  let held = false;
  const release = () => {
    held = false;
    if (!socket.destroyed) socket.uncork();
  };
  socket.write = function (this: Socket, ...args: Parameters<Socket['write']>): boolean {
    if (!held) {
      held = true;
      socket.cork();
      setImmediate(release);
    }
    return write.apply(this, args);
  } as Socket['write'];
}
