// What /healthz reports: Redis answers a PING within a second, or the daemon is unhealthy.
import { withTimeout } from '../core/timeout.js';

/** A health check waits this long for Redis before calling it unreachable. */
const PING_TIMEOUT_MS = 1_000;

export async function redisHealth(ping: () => Promise<unknown>): Promise<{ ok: boolean; checks: { redis: string } }> {
  try {
    await withTimeout(ping(), PING_TIMEOUT_MS, () => {
      throw new Error(`Redis PING timed out after ${PING_TIMEOUT_MS} ms`);
    });
    return { ok: true, checks: { redis: 'ok' } };
  } catch (err) {
    return { ok: false, checks: { redis: `unreachable: ${(err as Error).message}` } };
  }
}
