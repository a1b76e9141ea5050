// The SMTP AUTH users of a listener: a file of `user:hash` lines (`#` starts a comment), each
// hash as `impulse hash-password` prints it. Read whole or not at all, so a bad edit never
// leaves a listener with half its users.
import { readFileSync } from 'node:fs';
import { type ParsedHash, hashPassword, parseHash, verifyPassword } from './password-hash.js';

const USER = /^[^\s:]+$/;

/** A user name fits the file format: no whitespace or ':' (smtp-server refuses control characters). */
export function isValidUserName(user: string): boolean {
  return USER.test(user);
}

/** Every problem of the file in one message, each with its line number. */
export function parseUsers(text: string, path: string): Map<string, ParsedHash> {
  const users = new Map<string, ParsedHash>();
  const errors: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const user = colon < 0 ? '' : line.slice(0, colon);
    if (!isValidUserName(user)) return errors.push(`line ${i + 1}: expected user:hash, with no spaces in the user name`);
    if (users.has(user)) return errors.push(`line ${i + 1}: user "${user}" appears twice`);
    const hash = parseHash(line.slice(colon + 1));
    if (typeof hash === 'string') return errors.push(`line ${i + 1} (user "${user}"): ${hash}`);
    users.set(user, hash);
  });
  if (errors.length > 0) throw new Error(`users_file ${path}: ${errors.join('; ')}`);
  return users;
}

export class UsersFile {
  private users: Map<string, ParsedHash>;
  // Checked against for unknown users, so a reply takes as long whether the user exists or not.
  private decoy: Promise<ParsedHash>;

  constructor(readonly path: string) {
    this.users = this.read();
    this.decoy = hashPassword('').then((h) => parseHash(h) as ParsedHash);
  }

  get size(): number {
    return this.users.size;
  }

  /** Reads the file again; throws (and keeps the users it had) if it cannot be read or parsed. */
  reload(): void {
    this.users = this.read();
  }

  async check(user: string, password: string): Promise<boolean> {
    const hash = this.users.get(user);
    const ok = await verifyPassword(password, hash ?? await this.decoy);
    return ok && hash !== undefined;
  }

  private read(): Map<string, ParsedHash> {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      throw new Error(`users_file ${this.path}: ${(err as Error).message}`);
    }
    return parseUsers(text, this.path);
  }
}
