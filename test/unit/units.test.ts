// Config units: durations and sizes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration, parseSize } from '../../src/config/units.js';

test('durations in config units become milliseconds', () => {
  const table: Array<[string | number, number | undefined]> = [
    ['30s', 30_000], ['20m', 1_200_000], ['12h', 43_200_000], ['7d', 604_800_000], ['250ms', 250],
    [90, 90_000], ['1.5s', 1500], ['5', 5000], ['5 m', 300_000],
    ['', undefined], ['10y', undefined], ['-1s', undefined], [-3, undefined], ['s', undefined],
  ];
  for (const [input, expected] of table) assert.equal(parseDuration(input), expected, `parseDuration(${JSON.stringify(input)})`);
});

test('sizes in config units become bytes', () => {
  const table: Array<[string | number, number | undefined]> = [
    ['25MB', 25 * 1024 * 1024], ['512KB', 512 * 1024], ['1G', 1024 ** 3], ['100', 100], [2048, 2048],
    ['12XB', undefined], ['MB', undefined], [1.5, undefined],
  ];
  for (const [input, expected] of table) assert.equal(parseSize(input), expected, `parseSize(${JSON.stringify(input)})`);
});
