// A listening socket that never accepts, with its backlog filled, so a connection to it times
// out for real (SYNs are dropped) rather than being refused. Node always accepts, so the listener
// is a small python3 process that only calls listen(0).
import { spawn } from 'node:child_process';
import { type Socket, connect } from 'node:net';
import { killOnExit } from './cleanup.js';

export type Blackhole = { host: string; port: number; close(): Promise<void> };

const LISTENER = `
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(0)
print('listening', flush=True)
sys.stdin.read()
`;

export async function startBlackhole(host: string, port: number): Promise<Blackhole> {
  const child = spawn('python3', ['-c', LISTENER, host, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  killOnExit(child);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`blackhole listener exited (${code}): ${stderr}`)));
  });
  // One queued connection fills a backlog of 0; later SYNs get no answer.
  const filler: Socket = connect(port, host);
  filler.on('error', () => undefined);
  await new Promise<void>((resolve) => filler.once('connect', () => resolve()));
  return {
    host,
    port,
    async close() {
      filler.destroy();
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin.end();
      await exited;
    },
  };
}
