import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  asciiLower,
  compareUtf8,
  csvField,
  fromUtf8Lossy,
  isBlank,
  squashWhitespace,
  utf8,
  utf8Length,
} from '../lib/text.js';

test("compareUtf8 is Rust's byte order, not UTF-16's", () => {
  const fullwidthA = '\uff41'; // U+FF41: 3 bytes in UTF-8, one unit above the surrogates in UTF-16
  const euroBanknote = '\u{1f4b6}'; // 4 bytes, a surrogate pair
  assert.ok(fullwidthA > euroBanknote, 'JavaScript puts U+FF41 last');
  assert.ok(compareUtf8(fullwidthA, euroBanknote) < 0, 'Rust puts it first');
  const names = ['b', euroBanknote, 'Zürich', fullwidthA, 'a', 'Z', 'é', '', 'ab', '\ue000'];
  const sorted = [...names].sort(compareUtf8);
  const byBytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  assert.deepEqual(sorted, byBytes);
});

test('ASCII-only case folding and Rust whitespace', () => {
  assert.equal(asciiLower('FAB6-Ä-İ'), 'fab6-Ä-İ');
  assert.ok(isBlank(' \t\u0085\u3000'));
  assert.ok(!isBlank('\ufeff'), 'U+FEFF is not White_Space in Rust (it is in JavaScript)');
  assert.equal(squashWhitespace(' a \n\u00a0 b '), 'a b');
});

test('CSV fields are quoted only when they must be', () => {
  assert.equal(csvField('plain'), 'plain');
  assert.equal(csvField('a,b'), '"a,b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField('two\nlines'), '"two\nlines"');
  assert.equal(csvField('cr\r'), '"cr\r"');
});

test('UTF-8 without TextEncoder (as in QuickJS) matches Buffer', () => {
  const saved = { TextEncoder: globalThis.TextEncoder, TextDecoder: globalThis.TextDecoder };
  const fromBase64 = Uint8Array.fromBase64; // QuickJS has it; Node 20 does not
  try {
    globalThis.TextEncoder = undefined;
    globalThis.TextDecoder = undefined;
    Uint8Array.fromBase64 ??= (base64) => new Uint8Array(Buffer.from(base64, 'base64'));
    for (const text of ['', 'ascii', 'Zürich', '€', '\u{1f4b6}x', 'a\u07ffb\u0800c\uffff']) {
      assert.deepEqual(Buffer.from(utf8(text)), Buffer.from(text), text);
      assert.equal(utf8Length(text), Buffer.byteLength(text), text);
      assert.equal(fromUtf8Lossy(Buffer.from(text)), text);
    }
    assert.equal(fromUtf8Lossy([0x61, 0xff]), 'a\ufffd');
  } finally {
    Object.assign(globalThis, saved);
    if (fromBase64 === undefined) delete Uint8Array.fromBase64;
  }
});
