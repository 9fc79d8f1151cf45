/** Dates and times of Unix seconds, as the Rust adapters write them. */

export const DAY = 86_400;

/**
 * A WIT `s64` as a Number: QuickJS hands it over as a Number already,
 * StarlingMonkey as a BigInt. Timestamps are far inside 2⁵³.
 * @param {number | bigint} value
 */
export const int = (value) => (typeof value === 'bigint' ? Number(value) : value);

/**
 * Rust's `a.div_euclid(b)` of safe integers, exactly (no float rounding).
 * @param {number} a
 * @param {number} b > 0
 */
export function divEuclid(a, b) {
  const r = a % b;
  return (a - r) / b - (r < 0 ? 1 : 0);
}

/**
 * `YYYY-MM-DD` of a day number since the Unix epoch (civil-from-days,
 * Howard Hinnant, as in the Rust adapters).
 * @param {number} days
 */
export function isoDate(days) {
  const z = days + 719_468;
  const era = divEuclid(z, 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1_460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  // Rust's `{:04}` counts the sign in the width.
  const y = year < 0 ? `-${String(-year).padStart(3, '0')}` : String(year).padStart(4, '0');
  return `${y}-${pad2(month)}-${pad2(day)}`;
}

/**
 * `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
 * @param {number} seconds
 */
export function isoTime(seconds) {
  const time = seconds - divEuclid(seconds, DAY) * DAY;
  const clock = [Math.floor(time / 3600), Math.floor(time / 60) % 60, time % 60].map(pad2).join(':');
  return `${isoDate(divEuclid(seconds, DAY))}T${clock}Z`;
}

const pad2 = (n) => String(n).padStart(2, '0');
