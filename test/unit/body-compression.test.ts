// When bodies are compressed: from the threshold up, until Redis is back below three quarters of it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compressionWanted } from '../../src/store/body-compression.js';

const MB = 1024 * 1024;

test('compression starts at the threshold and stops below three quarters of it; an unknown reading keeps the last decision', () => {
  const table: Array<[wasOn: boolean, used: number | undefined, above: number, want: boolean]> = [
    [false, 10 * MB, 64 * MB, false],
    [false, 64 * MB - 1, 64 * MB, false],
    [false, 64 * MB, 64 * MB, true],
    [true, 63 * MB, 64 * MB, true],
    [true, 48 * MB, 64 * MB, true],
    [true, 48 * MB - 1, 64 * MB, false],
    [false, 50 * MB, 64 * MB, false],
    [true, undefined, 64 * MB, true],
    [false, undefined, 64 * MB, false],
    [false, 0, 0, true],
    [false, undefined, 0, true],
  ];
  for (const [wasOn, used, above, want] of table) {
    assert.equal(compressionWanted(wasOn, used, above), want, `was ${wasOn}, used ${used}, above ${above}`);
  }
});
