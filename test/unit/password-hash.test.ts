// Intake AUTH passwords: scrypt hashes and the users file.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type ParsedHash, hashPassword, parseHash, verifyPassword } from '../../src/intake/password-hash.js';
import { UsersFile, parseUsers } from '../../src/intake/users-file.js';

const dir = mkdtempSync(join(tmpdir(), 'impulse-users-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const parsed = (text: string): ParsedHash => {
  const h = parseHash(text);
  if (typeof h === 'string') assert.fail(h);
  return h;
};

test('a hash is a PHC scrypt string that verifies its password and no other', async () => {
  const hash = await hashPassword('correct horse');
  assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  assert.equal(await verifyPassword('correct horse', parsed(hash)), true);
  assert.equal(await verifyPassword('correct horse ', parsed(hash)), false);
  assert.equal(await verifyPassword('', parsed(hash)), false);
});

test('the same password hashes differently each time (random salt) and both verify', async () => {
  const [a, b] = await Promise.all([hashPassword('pw'), hashPassword('pw')]);
  assert.notEqual(a, b);
  assert.equal(await verifyPassword('pw', parsed(a)), true);
  assert.equal(await verifyPassword('pw', parsed(b)), true);
});

test('the parameters come from the string, so lines hashed at another cost still verify', async () => {
  const cheap = await hashPassword('pw', { ln: 10, r: 4, p: 2 });
  assert.match(cheap, /^\$scrypt\$ln=10,r=4,p=2\$/);
  assert.equal(await verifyPassword('pw', parsed(cheap)), true);
});

test('malformed hashes and costs outside the bounds are refused with the reason', () => {
  const salt = Buffer.alloc(16, 1).toString('base64').replace(/=+$/, '');
  const key = Buffer.alloc(32, 2).toString('base64').replace(/=+$/, '');
  const table: Array<[string, RegExp]> = [
    ['plain-text-password', /expected \$scrypt\$/],
    [`$argon2id$v=19$m=65536,t=3,p=4$${salt}$${key}`, /expected \$scrypt\$/],
    [`$scrypt$ln=15,r=8$${salt}$${key}`, /expected \$scrypt\$/],
    [`$scrypt$ln=30,r=8,p=1$${salt}$${key}`, /ln=30 is outside 10\.\.20/],
    [`$scrypt$ln=15,r=0,p=1$${salt}$${key}`, /r=0 is outside/],
    [`$scrypt$ln=15,r=8,p=99$${salt}$${key}`, /p=99 is outside/],
    [`$scrypt$ln=15,r=8,p=1$AAAA$${key}`, /salt is shorter/],
    [`$scrypt$ln=15,r=8,p=1$${salt}$AAAA`, /hash is shorter/],
  ];
  for (const [text, reason] of table) {
    const result = parseHash(text);
    assert.equal(typeof result, 'string', text);
    assert.match(result as string, reason, text);
  }
});

test('a users file takes comments and blank lines, and reports every bad line by number', async () => {
  const alice = await hashPassword('a-secret', { ln: 10, r: 8, p: 1 });
  const users = parseUsers(`# SMTP users\n\nalice:${alice}\r\n  # indented comment\n`, 'users');
  assert.deepEqual([...users.keys()], ['alice']);
  assert.throws(() => parseUsers(`alice:${alice}\nbob\nalice:${alice}\ncarol:nothash\nd ave:${alice}\n`, '/etc/users'), (err: Error) => {
    assert.match(err.message, /^users_file \/etc\/users: /);
    assert.match(err.message, /line 2: expected user:hash/);
    assert.match(err.message, /line 3: user "alice" appears twice/);
    assert.match(err.message, /line 4 \(user "carol"\): expected \$scrypt\$/);
    assert.match(err.message, /line 5: expected user:hash/);
    return true;
  });
});

test('UsersFile checks users, refuses unknown ones, and keeps its users when a reload finds a bad file', async () => {
  const path = join(dir, 'users');
  writeFileSync(path, `alice:${await hashPassword('a-secret', { ln: 10, r: 8, p: 1 })}\n`);
  const file = new UsersFile(path);
  assert.equal(await file.check('alice', 'a-secret'), true);
  assert.equal(await file.check('alice', 'wrong'), false);
  assert.equal(await file.check('mallory', 'a-secret'), false);
  assert.equal(await file.check('mallory', ''), false);
  writeFileSync(path, 'alice:garbage\n');
  assert.throws(() => file.reload(), /line 1 \(user "alice"\)/);
  assert.equal(await file.check('alice', 'a-secret'), true);
  assert.throws(() => new UsersFile(join(dir, 'missing')), /users_file .*missing: ENOENT/);
});
