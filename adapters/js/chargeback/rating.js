/**
 * The chargeback transform, free of the component imports so Node can test
 * it: a JavaScript port of adapters/chargeback-csv/src/rating.rs that writes
 * the very same bytes for the same usage and config. What it takes to be
 * byte-identical is noted where it happens: summation order, Rust's string
 * order, Rust's number formatting.
 */

import {
  ConfigError,
  checkCurrency,
  f64,
  mapOf,
  rateLookup,
  rateProblem,
  readConfig,
  sortedIds,
  string,
} from '../lib/config.js';
import { fixed6 } from '../lib/numbers.js';
import { asciiLower, compareUtf8, csvField, isBlank } from '../lib/text.js';
import { DAY, divEuclid, int, isoDate } from '../lib/time.js';

export const HEADER = 'date,group,subscription_id,meter_id,meter_name,unit,quantity,rate,cost,currency\n';
const UNALLOCATED = 'unallocated';
/** About how much CSV is handed over at a time (UTF-16 units). */
const PIECE_CHARS = 64 * 1024;

/**
 * @typedef {object} Config
 * @property {string} currency ISO 4217
 * @property {string} groupByTag the tag whose value names a row's group
 * @property {Map<string, number>} rates price per unit by lower-case meter id
 */

/** The fields of the Rust adapter's `Config`, in its order. */
const FIELDS = new Map([
  ['currency', string],
  ['group_by_tag', string],
  ['rates', mapOf(f64)],
]);

/**
 * Parses and checks the config JSON: the Rust adapter's checks, in its
 * order, with its reasons.
 * @param {string} json
 * @returns {Config}
 * @throws {ConfigError} saying what to fix
 */
export function parseConfig(json) {
  const config = readConfig(json, FIELDS, [...FIELDS.keys()]);
  checkCurrency(config.currency);
  if (isBlank(config.group_by_tag)) throw new ConfigError('config: group_by_tag must not be empty');
  for (const [meter, rate] of config.rates) {
    const problem = rateProblem(meter, rate);
    if (problem) throw new ConfigError(problem);
  }
  // Meter ids ignore case: two spellings of one meter would make its rate a coin toss.
  const ids = sortedIds(config.rates);
  for (const [i, a] of ids.entries()) {
    const b = ids.slice(i + 1).find((id) => asciiLower(id) === asciiLower(a));
    if (b !== undefined) {
      throw new ConfigError(
        `config: the rate card names meter '${a}' twice ('${a}' and '${b}'; ids ignore case)`,
      );
    }
  }
  return { currency: config.currency, groupByTag: config.group_by_tag, rates: rateLookup(config.rates) };
}

/**
 * Quantities summed per usage day, group, subscription and meter. Names are
 * interned once per batch, so a row costs a key and an addition.
 */
export class Chargeback {
  /** @param {string} groupByTag */
  constructor(groupByTag) {
    this.groupByTag = groupByTag;
    /** @type {Map<string, {day: number, group: number, subscription: number, meter: number, quantity: number}>} */
    this.sums = new Map();
    /** @type {string[]} */
    this.names = [];
    /** @type {Map<string, number>} */
    this.ids = new Map();
    this.rowsRead = 0;
  }

  /**
   * Adds a `usage-batch` (its string columns index `strings`).
   * @param {any} batch
   */
  add(batch) {
    const { strings } = batch;
    const local = new Array(strings.length).fill(-1);
    const idOf = (index) => (local[index] >= 0 ? local[index] : (local[index] = this.intern(strings[index])));
    const unallocated = this.intern(UNALLOCATED);
    const groups = batch.tagSets.map((set) => {
      const tag = set.find(([key]) => strings[key] === this.groupByTag);
      return tag ? idOf(tag[1]) : unallocated;
    });
    const { quantity, usageStart, tags, subscriptionId, meterId } = batch;
    for (let row = 0; row < quantity.length; row++) {
      const day = divEuclid(int(usageStart[row]), DAY);
      const group = groups[tags[row]];
      const subscription = idOf(subscriptionId[row]);
      const meter = idOf(meterId[row]);
      const key = `${day},${group},${subscription},${meter}`;
      const sum = this.sums.get(key);
      // Rows add up in the order they came, starting from 0 like Rust's
      // `or_default() +=` (so a first -0 becomes 0).
      if (sum) sum.quantity += quantity[row];
      else this.sums.set(key, { day, group, subscription, meter, quantity: 0 + quantity[row] });
    }
    this.rowsRead += quantity.length;
  }

  /** @param {string} name */
  intern(name) {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(name);
      this.ids.set(name, id);
    }
    return id;
  }

  /** Output rows so far. */
  get rows() {
    return this.sums.size;
  }

  /**
   * The CSV, rows ordered by day, group, subscription and meter (names in
   * Rust's byte order), handed to `write` in pieces of about 64 KiB (the
   * whole document is never held at once); returns the meters that had no
   * rate (exported at 0), in Rust's order.
   * @param {Config} config
   * @param {Map<string, {name: string, unit: string}>} catalog by lower-case meter id
   * @param {(piece: string) => void} write
   * @returns {string[]}
   */
  render(config, catalog, write) {
    const rank = ranks(this.names);
    const rows = [...this.sums.values()].sort(
      (a, b) =>
        a.day - b.day ||
        rank[a.group] - rank[b.group] ||
        rank[a.subscription] - rank[b.subscription] ||
        rank[a.meter] - rank[b.meter],
    );
    const unrated = new Set();
    let piece = [HEADER];
    let size = HEADER.length;
    for (const { day, group, subscription, meter, quantity } of rows) {
      const meterId = this.names[meter];
      let rate = config.rates.get(asciiLower(meterId));
      if (rate === undefined) {
        unrated.add(meterId);
        rate = 0;
      }
      const known = catalog.get(asciiLower(meterId));
      const line =
        `${isoDate(day)},${csvField(this.names[group])},${csvField(this.names[subscription])},` +
        `${csvField(meterId)},${csvField(known ? known.name : '')},${csvField(known ? known.unit : '')},` +
        `${fixed6(quantity)},${fixed6(rate)},${fixed6(quantity * rate)},${config.currency}\n`;
      piece.push(line);
      size += line.length;
      if (size >= PIECE_CHARS) {
        write(piece.join(''));
        piece = [];
        size = 0;
      }
    }
    if (piece.length > 0) write(piece.join(''));
    return [...unrated].sort(compareUtf8);
  }
}

/**
 * Each name's place in Rust's string order.
 * @param {string[]} names
 * @returns {Int32Array} rank by name id
 */
function ranks(names) {
  const order = names.map((_, id) => id).sort((a, b) => compareUtf8(names[a], names[b]));
  const rank = new Int32Array(names.length);
  order.forEach((id, place) => (rank[id] = place));
  return rank;
}
