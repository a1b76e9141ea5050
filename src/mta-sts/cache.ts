// MTA-STS policies cached in Redis, shared by every daemon on the same Redis, each kept until its
// max_age runs out (RFC 8461 §5.1), so a policy fetched once protects later deliveries even while
// its HTTPS host is unreachable.
import type { RedisClient } from '../store/redis.js';
import type { StsPolicy } from './policy.js';

export interface PolicyCache {
  /** The cached policy of `domain`, expired or not; undefined when none. */
  get(domain: string): Promise<StsPolicy | undefined>;
  put(domain: string, policy: StsPolicy): Promise<void>;
}

function isPolicy(v: unknown): v is StsPolicy {
  const p = v as Partial<StsPolicy> | null;
  return typeof p === 'object' && p !== null && typeof p.id === 'string' && typeof p.mode === 'string'
    && Array.isArray(p.mx) && typeof p.maxAge === 'number' && typeof p.fetchedAt === 'number' && typeof p.expiresAt === 'number';
}

export class RedisPolicyCache implements PolicyCache {
  constructor(private readonly redis: RedisClient, private readonly prefix: string, private readonly now: () => number) {}

  private key(domain: string): string {
    return `${this.prefix}:mta-sts:${domain}`;
  }

  async get(domain: string): Promise<StsPolicy | undefined> {
    const text = await this.redis.get(this.key(domain));
    if (text === null) return undefined;
    try {
      const v: unknown = JSON.parse(text);
      return isPolicy(v) ? v : undefined;
    } catch {
      return undefined;
    }
  }

  async put(domain: string, policy: StsPolicy): Promise<void> {
    const ttl = policy.expiresAt - this.now();
    if (ttl <= 0) return;
    await this.redis.set(this.key(domain), JSON.stringify(policy), 'PX', ttl);
  }
}
