// How a stored body is cut into pieces that fit the allocator, and put back together.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cutBody, pieceLengths } from '../../src/store/body-pieces.js';

test('a body is cut into at most four pieces that add up to it, the leading ones filling an allocator size class', () => {
  const table: Array<[length: number, pieces: number[], why: string]> = [
    [0, [0], 'an empty body is one empty piece'],
    [100, [100], 'small: whole'],
    [5305, [5114, 191], '5 KB message with its Received header: 5,120-byte block plus a small remainder, not a 6,144-byte block'],
    [5120, [5114, 6], 'just over a class'],
    [10240, [10234, 6], 'the next doubling'],
    [100_000, [98294, 1530, 176], 'three pieces when that saves more than a field costs'],
    [3_000_000, [3_000_000], 'past the classes, whole'],
  ];
  for (const [length, pieces, why] of table) assert.deepEqual(pieceLengths(length), pieces, why);
  for (let length = 0; length < 300_000; length += 997) {
    const parts = pieceLengths(length);
    assert.equal(parts.reduce((a, b) => a + b, 0), length, `pieces of ${length} add up`);
    assert.ok(parts.length >= 1 && parts.length <= 4, `${length}: ${parts.length} pieces`);
  }
});

test('the pieces, concatenated in field order, are the body byte for byte', () => {
  const body = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) % 256));
  const fields = cutBody(body);
  assert.deepEqual(Object.keys(fields), ['0', '1', '2']);
  assert.ok(Buffer.concat(Object.values(fields)).equals(body));
});
