// `impulse hash-password USER`: the line to add to a listener's auth.users_file. The password
// is read from the first line of stdin, so it never appears in the process list or shell history.
import type { Command } from 'commander';
import { hashPassword } from '../../intake/password-hash.js';
import { isValidUserName } from '../../intake/users-file.js';
import { EXIT } from '../admin-client.js';

async function firstLine(input: NodeJS.ReadStream): Promise<string | undefined> {
  let text = '';
  input.setEncoding('utf8');
  for await (const chunk of input) {
    text += chunk as string;
    const eol = text.indexOf('\n');
    if (eol >= 0) return text.slice(0, eol).replace(/\r$/, '');
  }
  return text === '' ? undefined : text;
}

function fail(message: string): never {
  process.stderr.write(`impulse: ${message}\n`);
  process.exit(EXIT.usage);
}

export function register(program: Command): void {
  program.command('hash-password')
    .description('print a "user:hash" line for a listener\'s auth.users_file; the password is read from the first line of stdin')
    .argument('<user>', 'SMTP AUTH user name (no spaces or ":")')
    .action(async (user: string) => {
      if (!isValidUserName(user)) fail(`invalid user name "${user}": spaces and ":" are not allowed`);
      if (process.stdin.isTTY) process.stderr.write(`Password for ${user} (shown as typed): `);
      const password = await firstLine(process.stdin);
      if (!password) fail('no password on stdin');
      process.stdout.write(`${user}:${await hashPassword(password)}\n`);
    });
}
