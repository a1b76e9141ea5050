// Password hashes for SMTP AUTH users: scrypt from node:crypto in a self-describing PHC string,
// `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64 without padding), so the cost can be raised
// later without invalidating existing lines.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  readonly ln: number;
  readonly r: number;
  readonly p: number;
}

/** About 32 MiB and a few tens of milliseconds per check: slow for guessing, fine for AUTH. */
const DEFAULT_PARAMS: ScryptParams = { ln: 15, r: 8, p: 1 };

const SALT_BYTES = 16;
const KEY_BYTES = 32;
// Bounds on what a users file may ask for, so a mistyped line cannot make each AUTH take
// gigabytes of memory or minutes of CPU.
const LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16] } as const;
const PHC = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

export interface ParsedHash {
  params: ScryptParams;
  salt: Buffer;
  key: Buffer;
}

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

function derive(password: string, salt: Buffer, keyLength: number, { ln, r, p }: ScryptParams): Promise<Buffer> {
  const N = 2 ** ln;
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, { N, r, p, maxmem: 256 * N * r }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** The parsed hash, or why the text is not one. */
export function parseHash(text: string): ParsedHash | string {
  const m = PHC.exec(text);
  if (!m) return 'expected $scrypt$ln=N,r=N,p=N$<salt>$<hash> (impulse hash-password prints one)';
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  for (const k of ['ln', 'r', 'p'] as const) {
    const [lo, hi] = LIMITS[k];
    if (params[k] < lo || params[k] > hi) return `scrypt ${k}=${params[k]} is outside ${lo}..${hi}`;
  }
  const salt = Buffer.from(m[4]!, 'base64');
  const key = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8) return 'the salt is shorter than 8 bytes';
  if (key.length < 16) return 'the hash is shorter than 16 bytes';
  return { params, salt, key };
}

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_PARAMS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, KEY_BYTES, params);
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(key)}`;
}

export async function verifyPassword(password: string, hash: ParsedHash): Promise<boolean> {
  const key = await derive(password, hash.salt, hash.key.length, hash.params);
  return timingSafeEqual(key, hash.key);
}
