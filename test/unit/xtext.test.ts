// xtext and utf-8-addr-xtext (RFC 3461 4, RFC 6533 3), table by table, and the repair of a value
// smtp-server decoded from xtext one byte to a character.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { utf8AddrXtext, utf8AddressOf, utf8OfXtextBytes, xtext } from '../../src/core/xtext.js';

test('xtext encodes +, = and everything outside ! to ~, by the bytes of the UTF-8 encoding', () => {
  const table: Array<[string, string]> = [
    ['rfc822;bob@example.com', 'rfc822;bob@example.com'],
    ['a+b=c d', 'a+2Bb+3Dc+20d'],
    ['zoë@a.test', 'zo+C3+AB@a.test'],
  ];
  for (const [value, want] of table) assert.equal(xtext(value), want, value);
});

test('a value smtp-server decoded one byte to a character is read back as its UTF-8; anything else stays', () => {
  const table: Array<[string, string, string]> = [
    ['rfc822;zo\u00c3\u00ab@a.test', 'rfc822;zoë@a.test', 'xtext of UTF-8 bytes'],
    ['rfc822;zoë@a.test', 'rfc822;zoë@a.test', 'raw UTF-8 sent with SMTPUTF8'],
    ['plain', 'plain', 'ASCII'],
    ['caf\u00e9', 'caf\u00e9', 'a Latin-1 byte that is no UTF-8 stays'],
  ];
  for (const [value, want, why] of table) assert.equal(utf8OfXtextBytes(value), want, why);
});

test('utf-8-addr-xtext writes \\x{HEX} for all but QCHARs, and reads back xtext and unitext forms alike', () => {
  assert.equal(utf8AddrXtext('chloé@a.test'), 'chlo\\x{E9}@a.test');
  assert.equal(utf8AddrXtext('a+b\\c'), 'a\\x{2B}b\\x{5C}c');
  assert.equal(utf8AddressOf('chlo\\x{E9}@a.test'), 'chloé@a.test');
  assert.equal(utf8AddressOf('chloé@a.test'), 'chloé@a.test', 'unitext: already native');
  assert.equal(utf8AddressOf('bad\\x{D800}'), undefined, 'a surrogate is no character');
  assert.equal(utf8AddressOf('bad\\q'), undefined);
});
