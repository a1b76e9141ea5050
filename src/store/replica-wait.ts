// Redis WAIT after a message's writes: intake's 250 waits until redis.wait_replicas replicas of
// every master that took the writes acknowledged them, so a failover to one of them keeps the
// message.
//
// WAIT counts the writes of the connection it is sent on, so it goes to the socket that carried
// them: the master's connection in a Cluster client (the node the slot map names, after any MOVED
// the writes met), the one connection otherwise. The intake's connections never re-send a command
// on a new socket (autoResendUnfulfilledCommands off), so writes answered on a socket were run by
// the Redis behind it; a WAIT is sent only if that socket is still the connection's, as a WAIT on
// a new socket (a reconnection, a promoted replica) would count none of them and answer at once.
//
// One WAIT in flight serves every message whose writes completed on the same socket meanwhile:
// Redis runs nothing else of a client while WAIT blocks it, so writes answered while a WAIT is
// out were run before it, and that WAIT covers them.
import type { Socket } from 'node:net';
import { Cluster, type Redis } from 'ioredis';
import { keySlot } from './key-slot.js';
import { INTAKE_COMMAND_TIMEOUT_MS, type RedisClient } from './redis.js';

/** Fewer replicas acknowledged the writes than asked for: intake answers 451 and removes the message. */
export class ReplicaShortfall extends Error {
  constructor(readonly acknowledged: number, readonly wanted: number, readonly timeoutMs: number) {
    super(`${acknowledged} of ${wanted} Redis replicas confirmed the message within ${timeoutMs} ms`);
  }
}

export class ReplicaWait {
  private readonly inFlight = new Map<Socket, Promise<number>>();

  constructor(private readonly client: RedisClient, readonly replicas: number, readonly timeoutMs: number) {}

  /**
   * How long a message's jobs wait (delayed) before they may be delivered, unless promoted once
   * their writes are confirmed: longer than the writes, the WAIT and the removal after a shortfall
   * can take with every command at its timeout, so refused mail is gone before it could be due.
   */
  get holdMs(): number {
    return 2 * (INTAKE_COMMAND_TIMEOUT_MS + 2 * this.timeoutMs);
  }

  /** Resolves once every master holding one of `keys` (one per slot written) has the writes on `replicas` replicas; else throws. */
  async confirm(keys: readonly string[]): Promise<void> {
    const sockets = new Map<Socket, Redis>();
    for (const key of keys) {
      const conn = this.connectionOf(key);
      const socket = conn.stream as Socket | undefined;
      if (!socket || conn.status !== 'ready') throw new Error(`the Redis connection that took the writes of ${key} is gone`);
      sockets.set(socket, conn);
    }
    const acknowledged = await Promise.all([...sockets].map(([socket, conn]) => this.wait(socket, conn)));
    const least = Math.min(...acknowledged);
    if (least < this.replicas) throw new ReplicaShortfall(least, this.replicas, this.timeoutMs);
  }

  private connectionOf(key: string): Redis {
    if (!(this.client instanceof Cluster)) return this.client;
    const slot = keySlot(key);
    const owner = this.client.slots[slot]?.[0];
    const node = this.client.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
    if (!node) throw new Error(`no master known for slot ${slot} (${key})`);
    return node;
  }

  private wait(socket: Socket, conn: Redis): Promise<number> {
    const pending = this.inFlight.get(socket);
    if (pending) return pending;
    const sent = conn.wait(this.replicas, this.timeoutMs).finally(() => this.inFlight.delete(socket));
    this.inFlight.set(socket, sent);
    return sent;
  }
}
