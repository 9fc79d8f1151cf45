/**
 * Numbers written the way the Rust adapters write them, so that a JavaScript
 * adapter's documents can be byte-identical to a Rust one's.
 *
 * JavaScript's own formatting differs: `toFixed` rounds exact ties up (and
 * switches to exponent notation from 1e21), `String` uses exponents below
 * 1e-6, and neither shows the sign of negative zero. These functions work on
 * the exact binary value of a double instead.
 */

const MICROS = 1_000_000n;
const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);
const bits = new DataView(new ArrayBuffer(8));

/**
 * `x` with six decimals, as Rust's `format!("{:.6}", x)`: the exact binary
 * value rounded half to even, never an exponent, `-` on negative zero,
 * `NaN`, `inf` and `-inf`.
 * @param {number} x
 * @returns {string} e.g. `fixed6(0.0078125) === "0.007812"` (`toFixed` gives 0.007813)
 */
export function fixed6(x) {
  // `toFixed` rounds the exact value too, and differs only on exact ties
  // (x = odd / 128: x × 10⁶ ends in .5), from 1e21 and on zeros.
  if (x !== 0 && Math.abs(x) < 1e21 && (x * 128) % 2 !== 1 && (x * 128) % 2 !== -1) return x.toFixed(6);
  if (Number.isNaN(x)) return 'NaN';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  if (!Number.isFinite(x)) return `${sign}inf`;
  const digits = roundedMicros(Math.abs(x)).toString().padStart(7, '0');
  return `${sign}${digits.slice(0, -6)}.${digits.slice(-6)}`;
}

/**
 * x = mantissa × 2^exponent, exactly, for a finite x ≥ 0.
 * @param {number} x
 * @returns {[bigint, number]}
 */
function decompose(x) {
  bits.setFloat64(0, x);
  const word = bits.getBigUint64(0);
  const biased = Number(word >> 52n);
  const fraction = word & 0xfffffffffffffn;
  return biased === 0 ? [fraction, -1074] : [fraction | 0x10000000000000n, biased - 1075];
}

/**
 * round(x × 10⁶) of a finite x ≥ 0, ties to even, computed exactly.
 * @param {number} x
 * @returns {bigint}
 */
function roundedMicros(x) {
  const [mantissa, exponent] = decompose(x);
  const scaled = mantissa * MICROS;
  if (exponent >= 0) return scaled << BigInt(exponent);
  const shift = BigInt(-exponent);
  const quotient = scaled >> shift;
  const remainder = scaled - (quotient << shift);
  const half = 1n << (shift - 1n);
  const up = remainder > half || (remainder === half && (quotient & 1n) === 1n);
  return up ? quotient + 1n : quotient;
}

/**
 * `x` as Rust's `format!("{}", x)`: the shortest digits that read back as
 * `x`, without an exponent (`1e-7` → `0.0000001`), `-0` for negative zero.
 * When two shortest digit strings are equally close to `x` (it lies exactly
 * between them), Rust takes the upper one and JavaScript the even one:
 * `0.5 + 2 ** -17` is `0.5000076293945313` in Rust, `…312` in `String`.
 * @param {number} x
 * @returns {string}
 */
export function decimal(x) {
  if (Number.isNaN(x)) return 'NaN';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  if (!Number.isFinite(x)) return `${sign}inf`;
  if (x === 0) return `${sign}0`;
  // JavaScript's shortest digits: x ≈ digits × 10^power.
  const [significand, exponent = '0'] = String(Math.abs(x)).split('e');
  const [whole, fraction = ''] = significand.split('.');
  let digits = BigInt(whole + fraction);
  let power = Number(exponent) - fraction.length;
  // Two shortest candidates can tie only at 16 or 17 significant digits.
  if (String(digits).length >= 16 && isMidpoint(Math.abs(x), digits, power)) {
    digits += 1n;
    while (digits % 10n === 0n) {
      digits /= 10n;
      power += 1;
    }
  }
  const text = String(digits);
  if (power >= 0) return sign + text + '0'.repeat(power);
  const point = text.length + power;
  return point > 0
    ? `${sign}${text.slice(0, point)}.${text.slice(point)}`
    : `${sign}0.${'0'.repeat(-point)}${text}`;
}

/**
 * Whether x (finite, > 0) is exactly (digits + ½) × 10^power.
 * @param {number} x
 * @param {bigint} digits
 * @param {number} power
 */
function isMidpoint(x, digits, power) {
  const [mantissa, exponent] = decompose(x);
  // mantissa × 2^(exponent+1) = (2·digits + 1) × 10^power, with every
  // negative power moved to the other side.
  const twice = exponent + 1;
  const left = (mantissa * 10n ** BigInt(Math.max(0, -power))) << BigInt(Math.max(0, twice));
  const right = ((2n * digits + 1n) * 10n ** BigInt(Math.max(0, power))) << BigInt(Math.max(0, -twice));
  return left === right;
}

/**
 * Rust's `x.round() as i64`: half away from zero, then saturated to the i64
 * range (NaN gives 0).
 * @param {number} x
 * @returns {bigint}
 */
export function roundToI64(x) {
  if (Number.isNaN(x)) return 0n;
  if (x >= 2 ** 63) return I64_MAX;
  if (x < -(2 ** 63)) return I64_MIN;
  return BigInt(x < 0 ? -Math.round(-x) : Math.round(x));
}

/**
 * Millionths as a decimal string: `1234567n` → `"1.234567"`.
 * @param {bigint} value
 * @returns {string}
 */
export function micros(value) {
  const sign = value < 0n ? '-' : '';
  const abs = value < 0n ? -value : value;
  return `${sign}${abs / MICROS}.${String(abs % MICROS).padStart(6, '0')}`;
}
