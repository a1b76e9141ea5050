// Intake's bare CR / LF detector over message data split into chunks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type BareNewline, BareNewlineDetector } from '../../src/intake/bare-newline.js';

function scan(chunks: string[]): BareNewline | undefined {
  const d = new BareNewlineDetector();
  for (const c of chunks) d.update(Buffer.from(c, 'latin1'));
  return d.end();
}

test('CRLF-only data passes however it is split into chunks', () => {
  const text = 'Subject: x\r\n\r\nline one\r\n.dot\r\n\r\n';
  assert.equal(scan([text]), undefined);
  for (let cut = 0; cut <= text.length; cut++) assert.equal(scan([text.slice(0, cut), text.slice(cut)]), undefined, `cut at ${cut}`);
  assert.equal(scan([...text]), undefined);
  assert.equal(scan([]), undefined);
});

test('the first bare LF or CR is found with its offset, also across chunk boundaries', () => {
  const table: Array<[string[], BareNewline]> = [
    [['ab\ncd\r\n'], { kind: 'LF', offset: 2 }],
    [['ab\rcd\r\n'], { kind: 'CR', offset: 2 }],
    [['\nabc\r\n'], { kind: 'LF', offset: 0 }],
    [['ab\r', 'cd\r\n'], { kind: 'CR', offset: 2 }],
    [['ab\r\n', '\nx\r\n'], { kind: 'LF', offset: 4 }],
    [['ab\r\r\n'], { kind: 'CR', offset: 2 }],
    [['ab\r\n\r'], { kind: 'CR', offset: 4 }],
    [['x\r\n.\n'], { kind: 'LF', offset: 4 }],
    [['x\r.\r\n'], { kind: 'CR', offset: 1 }],
    [['a\rb\nc'], { kind: 'CR', offset: 1 }],
    [['a\r\nb\nc\rd'], { kind: 'LF', offset: 4 }],
  ];
  for (const [chunks, expected] of table) assert.deepEqual(scan(chunks), expected, JSON.stringify(chunks));
});
