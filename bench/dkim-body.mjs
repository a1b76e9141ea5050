// DKIM's relaxed body hash of one message, mailauth's canonicaliser against Impulse's native
// searches (src/dkim/sign.ts), on bodies of the kinds outbound mail carries: µs per body, medians.
// Needs the build (`npm run build`). Prints one JSON line per body.
import { createHash } from 'node:crypto';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { relaxedBody } from '../dist/src/dkim/sign.js';

const ROUNDS = 7;
const PER_ROUND = 5000;

// The injector's body: random letters, digits and spaces (so a double space and a space before
// a line end now and then), 76 to a line.
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ';
let state = 7;
const random = () => {
  state = (state * 1103515245 + 12345) % 2 ** 31;
  return state / 2 ** 31;
};
const text = Array.from({ length: 65 }, () => Array.from({ length: 76 }, (_, i) => ALPHABET[Math.floor(random() * (i === 0 ? 52 : ALPHABET.length))]).join('')).join('\r\n') + '\r\n';
const html = ('<div>\r\n' + '    <p class="lead">Some  text, and a link <a href="https://example.test/">here</a></p>\r\n'.repeat(3) + '\t<br>\r\n').repeat(16);
const base64 = createHash('sha512').update('x').digest('base64').repeat(60).match(/.{1,76}/g).join('\r\n') + '\r\n';

const bodies = { 'plain text (the injector\'s)': text, 'indented HTML': html, base64 };

const mailauth = (body) => {
  const hasher = dkimBody('relaxed/relaxed', 'sha256', false);
  hasher.update(body);
  return hasher.digest('base64');
};
const native = (body) => createHash('sha256').update(relaxedBody(body)).digest('base64');

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function timed(fn, body) {
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < PER_ROUND; i++) fn(body);
    rounds.push(Number(process.hrtime.bigint() - t0) / PER_ROUND / 1000);
  }
  return median(rounds);
}

for (const [name, source] of Object.entries(bodies)) {
  const body = Buffer.from(source, 'latin1');
  if (native(body) !== mailauth(body)) throw new Error(`${name}: the two hashes differ`);
  console.log(JSON.stringify({ body: name, bytes: body.length, mailauth_us: +timed(mailauth, body).toFixed(1), native_us: +timed(native, body).toFixed(1) }));
}
