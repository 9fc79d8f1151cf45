// Expected strings are what Rust prints (rustc 1.95, `{:.6}` and `{}`).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decimal, fixed6, micros, roundToI64 } from '../lib/numbers.js';

test('fixed6 is Rust {:.6}: exact value, ties to even, no exponent, signed zero', () => {
  for (const [x, rust] of [
    [0.0078125, '0.007812'], // an exact tie: toFixed(6) gives 0.007813
    [-0.0078125, '-0.007812'],
    [0.0234375, '0.023438'],
    [0.00390625, '0.003906'],
    [0.01171875, '0.011719'],
    [2.0000005, '2.000001'], // just above the tie in binary
    [7.0000005, '7.000000'], // just below
    [0.9999995, '1.000000'],
    [999999.9999995, '999999.999999'],
    [5e-7, '0.000000'],
    [2.5e-6, '0.000003'],
    [0, '0.000000'],
    [-0, '-0.000000'],
    [-1e-7, '-0.000000'],
    [-5e-324, '-0.000000'],
    [96 * 0.025, '2.400000'],
    [4503599627370495.5, '4503599627370495.500000'],
    [1e20, '100000000000000000000.000000'],
    [1e21, '1000000000000000000000.000000'], // toFixed switches to 1e+21
    [-1e21, '-1000000000000000000000.000000'],
    [123456789012345678901234, '123456789012345685803008.000000'],
    [Infinity, 'inf'],
    [-Infinity, '-inf'],
    [NaN, 'NaN'],
  ]) {
    assert.equal(fixed6(x), rust, `fixed6(${x})`);
  }
  assert.equal(
    fixed6(Number.MAX_VALUE),
    `${'179769313486231570814527423731704356798070567525844996598917476803157260780028538760589558632766878171540458953514382464234321326889464182768467546703537516986049910576551282076245490090389328944075868508455133942304583236903222948165808559332123348274797826204144723168738177180919299881250404026184124858368'}.000000`,
  );
});

test('decimal is Rust {}: shortest digits, no exponent, upper of two equally close', () => {
  for (const [x, rust] of [
    [0.025, '0.025'],
    [0.00003, '0.00003'],
    [1e-7, '0.0000001'],
    [-1e-7, '-0.0000001'],
    [1e21, '1000000000000000000000'],
    [2.4000000000000004, '2.4000000000000004'],
    [0, '0'],
    [-0, '-0'],
    [0.5 + 2 ** -17, '0.5000076293945313'], // String() gives …312
    [1389203678596250.25, '1389203678596250.3'],
    [5e-324, `0.${'0'.repeat(323)}5`],
    [Infinity, 'inf'],
    [NaN, 'NaN'],
  ]) {
    assert.equal(decimal(x), rust, `decimal(${x})`);
  }
});

test('roundToI64 is Rust x.round() as i64', () => {
  assert.equal(roundToI64(2.5), 3n);
  assert.equal(roundToI64(-2.5), -3n);
  assert.equal(roundToI64(0.49999999999999994), 0n);
  assert.equal(roundToI64(-0), 0n);
  assert.equal(roundToI64(1e300), 2n ** 63n - 1n);
  assert.equal(roundToI64(-1e300), -(2n ** 63n));
  assert.equal(roundToI64(NaN), 0n);
});

test('micros', () => {
  assert.equal(micros(1_234_567n), '1.234567');
  assert.equal(micros(5n), '0.000005');
  assert.equal(micros(-5n), '-0.000005');
  assert.equal(micros(0n), '0.000000');
});
