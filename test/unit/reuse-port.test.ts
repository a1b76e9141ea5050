// SO_REUSEPORT is asked of Node.js only where its net module knows the option.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { supportsReusePort } from '../../src/intake/reuse-port.js';

test('reuse_port is supported from Node.js 22.12 and 23.1 on', () => {
  const table: Array<[string, boolean]> = [
    ['20.20.2', false], ['22.11.0', false], ['22.12.0', true], ['22.20.1', true], ['23.0.0', false], ['23.1.0', true], ['24.0.0', true], ['26.3.1', true],
  ];
  for (const [version, want] of table) assert.equal(supportsReusePort(version), want, version);
});
