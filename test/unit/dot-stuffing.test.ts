// Dot-stuffing by native search: a table of chunks, and the same bytes and counters as nodemailer's
// own DataStream over random messages cut into random chunks, clean or not.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type DataStream, stuffDots, stuffDotsFast } from '../../src/delivery/dot-stuffing.js';

// nodemailer's DataStream is not among its package's exports: loaded from its file, next to the entry point.
const DataStreamClass = ((await import(new URL('./smtp-connection/data-stream.js', import.meta.resolve('nodemailer')).href)) as {
  default: new () => DataStream;
}).default;

test('a CRLF-clean chunk gets a dot before each line that starts with one; a bare CR or LF is left to the walk', () => {
  const table: Array<[chunk: string, lastByte: number | false, want: string | undefined, why: string]> = [
    ['Subject: a\r\n\r\nbody\r\n', false, 'Subject: a\r\n\r\nbody\r\n', 'nothing to stuff'],
    ['.hidden\r\n', false, '..hidden\r\n', 'a dot at the start of the message'],
    ['.hidden\r\n', 0x0a, '..hidden\r\n', 'a dot at the start of a chunk that starts a line'],
    ['.x\r\n', 0x41, '.x\r\n', 'a dot in the middle of a line cut at a chunk edge'],
    ['a\r\n.\r\n..\r\nb.c\r\n', false, 'a\r\n..\r\n...\r\nb.c\r\n', 'dots at the starts of lines only'],
    ['a\r\n.', false, 'a\r\n..', 'a line that starts with a dot at the end of the chunk'],
    ['', false, '', 'empty'],
    ['a\nb\r\n', false, undefined, 'bare LF'],
    ['\nb\r\n', 0x0d, undefined, 'the LF of a CR at the end of the chunk before'],
    ['\nb\r\n', 0x0a, undefined, 'bare LF at the start of the chunk'],
    ['a\rb\r\n', false, undefined, 'bare CR'],
    ['a\r\nb\r', false, undefined, 'a CR whose LF may come in the next chunk'],
  ];
  for (const [chunk, lastByte, want, why] of table) {
    assert.equal(stuffDots(Buffer.from(chunk), lastByte)?.toString(), want, why);
  }
});

/** Runs `chunks` through a DataStream, patched or not, and returns its output and counters. */
async function run(chunks: Buffer[], fast: boolean): Promise<{ out: string; inBytes: number; outBytes: number }> {
  const stream = fast ? stuffDotsFast(new DataStreamClass()) : new DataStreamClass();
  const got: Buffer[] = [];
  stream.on('data', (b: Buffer) => got.push(b));
  const ended = new Promise((resolve) => stream.on('end', resolve));
  for (const c of chunks) stream.write(c);
  stream.end();
  await ended;
  return { out: Buffer.concat(got).toString('latin1'), inBytes: stream.inByteCount, outBytes: stream.outByteCount };
}

test('the bytes and counters are nodemailer\'s own for random messages, clean or with bare line ends', async () => {
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const pieces = ['a', 'bc', ' ', '.', '..', '\r\n', '\r\n.', '\r\n.\r\n'];
  const bare = ['\n', '\r', '\n.', '\r.'];
  let cleanRuns = 0;
  for (let i = 0; i < 400; i++) {
    const clean = i % 2 === 0;
    const text = Array.from({ length: 40 }, () => (!clean && rand(8) === 0 ? bare[rand(bare.length)] : pieces[rand(pieces.length)])).join('');
    const bytes = Buffer.from(text, 'latin1');
    const cuts = [0, ...Array.from({ length: rand(4) }, () => rand(bytes.length)).sort((a, b) => a - b), bytes.length];
    const chunks = cuts.slice(1).map((end, k) => bytes.subarray(cuts[k], end));
    assert.deepEqual(await run(chunks, true), await run(chunks, false), JSON.stringify(chunks.map((c) => c.toString('latin1'))));
    if (clean) cleanRuns++;
  }
  assert.equal(cleanRuns, 200);
});

test('clean chunks never reach nodemailer\'s walk; a chunk with a bare LF does', async () => {
  const stream = stuffDotsFast(Object.assign(new DataStreamClass(), {
    _transform(): void {
      throw new Error('walked');
    },
  }));
  const got: Buffer[] = [];
  stream.on('data', (b: Buffer) => got.push(b));
  stream.write(Buffer.from('Subject: x\r\n\r\n.one\r\n'));
  stream.write(Buffer.from('.two\r\n'));
  assert.equal(Buffer.concat(got).toString(), 'Subject: x\r\n\r\n..one\r\n..two\r\n');
  assert.throws(() => stream.write(Buffer.from('bare\nLF\r\n')), /walked/);
});
