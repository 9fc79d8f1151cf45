import assert from 'node:assert/strict';
import { test } from 'node:test';

import { divEuclid, int, isoDate, isoTime } from '../lib/time.js';

test('dates and times as the Rust adapters write them', () => {
  assert.equal(isoDate(0), '1970-01-01');
  assert.equal(isoDate(20_454), '2026-01-01');
  assert.equal(isoDate(-1), '1969-12-31');
  assert.equal(isoDate(-719_529), '-001-12-31'); // Rust's {:04} counts the sign
  assert.equal(isoTime(0), '1970-01-01T00:00:00Z');
  assert.equal(isoTime(1_764_300_000), '2025-11-28T03:20:00Z');
  assert.equal(isoTime(-1), '1969-12-31T23:59:59Z');
  // Years 1 to 9999 against the platform's calendar.
  for (let day = -719_162; day < 2_932_897; day += 997) {
    assert.equal(isoDate(day), new Date(day * 86_400_000).toISOString().slice(0, 10), String(day));
  }
});

test('div_euclid is exact and s64 may arrive as BigInt', () => {
  assert.equal(divEuclid(-1, 86_400), -1);
  assert.equal(divEuclid(86_399, 86_400), 0);
  assert.equal(divEuclid(2 ** 53 - 1, 86_400), Math.floor((2 ** 53 - 1) / 86_400));
  assert.equal(int(1_793_318_400n), 1_793_318_400);
  assert.equal(int(5), 5);
});
