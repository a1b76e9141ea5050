// Free TCP ports for the servers a test starts.
import { createServer } from 'node:net';

// The kernel picks the port, so parallel test files never collide on a hard-coded number.
// Someone else could grab it between close and reuse; on loopback in a test run that race is rare enough.
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`freePort: unexpected address ${String(address)}`));
        return;
      }
      server.close((err) => (err ? reject(err) : resolve(address.port)));
    });
  });
}
