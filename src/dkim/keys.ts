// DKIM private keys as configured: read, typed and sized at start, at each reload and by check-config.
import { type KeyObject, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** One `dkim:` entry of the configuration. */
export interface DkimEntry {
  domain: string;
  selector: string;
  key_file: string;
  headers: readonly string[];
  oversign_headers: readonly string[];
  /** Signature lifetime in ms (the x= tag); undefined sets none. */
  expire?: number | undefined;
}

type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

/** A key ready to sign with. */
export interface DkimKey {
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: DkimAlgorithm;
  readonly key: KeyObject;
  /** RSA modulus length; undefined for Ed25519. */
  readonly bits: number | undefined;
  readonly headers: readonly string[];
  readonly oversignHeaders: readonly string[];
  readonly expire: number | undefined;
}

interface LoadedKeys {
  keys: DkimKey[];
  /** Keys that cannot be used: the daemon does not start, a reload is refused. */
  errors: string[];
  /** Keys that work but should be replaced. */
  warnings: string[];
}

/** RFC 8301 §3.2: verifiers must refuse RSA keys under 1024 bits; 2048 is what receivers now expect. */
const RSA_MIN_BITS = 1024;
const RSA_GOOD_BITS = 2048;

export function loadDkimKeys(entries: readonly DkimEntry[]): LoadedKeys {
  const out: LoadedKeys = { keys: [], errors: [], warnings: [] };
  entries.forEach((e, i) => {
    const where = `dkim[${i}] (${e.domain}, selector ${e.selector}): key_file ${e.key_file}`;
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: readFileSync(e.key_file), format: 'pem' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'not readable by this user' : code === 'EISDIR' ? 'is a directory'
        : `not a PEM private key (${(err as Error).message})`;
      out.errors.push(`${where}: ${why}`);
      return;
    }
    const type = key.asymmetricKeyType;
    if (type !== 'rsa' && type !== 'ed25519') {
      out.errors.push(`${where}: the key is of type ${type ?? 'unknown'}; DKIM signs with RSA or Ed25519 keys`);
      return;
    }
    const bits = type === 'rsa' ? key.asymmetricKeyDetails?.modulusLength : undefined;
    if (bits !== undefined && bits < RSA_MIN_BITS) {
      out.errors.push(`${where}: an RSA key of ${bits} bits; verifiers refuse fewer than ${RSA_MIN_BITS} (RFC 8301)`);
      return;
    }
    if (bits !== undefined && bits < RSA_GOOD_BITS) {
      out.warnings.push(`${where}: an RSA key of ${bits} bits; receivers expect ${RSA_GOOD_BITS}, replace it`);
    }
    out.keys.push({
      domain: e.domain, selector: e.selector, algorithm: type === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256', key, bits,
      headers: e.headers, oversignHeaders: e.oversign_headers, expire: e.expire,
    });
  });
  return out;
}
