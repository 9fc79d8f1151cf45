import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { MAX_DOCUMENT_NAME, documentName, sha256Hex } from '../lib/names.js';

test('sha256Hex is SHA-256', () => {
  for (const length of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
    const bytes = Uint8Array.from({ length }, (_, i) => (i * 31 + length) & 0xff);
    assert.equal(sha256Hex(bytes), createHash('sha256').update(bytes).digest('hex'), `${length} bytes`);
  }
});

test('documents are named by the subscription, or its digest (as the Rust kit)', () => {
  assert.equal(documentName('statement-', 'Sub_1.a-B', '.html'), 'statement-Sub_1.a-B.html');
  assert.equal(documentName('statement-', 'edge, "quoted"', '.csv'), 'statement-9495873879bc527f.csv');
  assert.equal(documentName('s-', '', '.csv'), 's-e3b0c44298fc1c14.csv');
  const fits = 'a'.repeat(MAX_DOCUMENT_NAME - 14);
  assert.equal(documentName('statement-', fits, '.csv').length, MAX_DOCUMENT_NAME);
  assert.equal(documentName('statement-', `${fits}a`, '.csv').length, 30);
  const digest = createHash('sha256').update('Zürich').digest('hex').slice(0, 16);
  assert.equal(documentName('c-', 'Zürich', '.csv'), `c-${digest}.csv`);
});
