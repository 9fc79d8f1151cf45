/**
 * The chargeback transform, free of the component imports so Node can test
 * it: a JavaScript port of adapters/chargeback-csv/src/rating.rs that writes
 * the very same bytes for the same usage and config. What it takes to be
 * byte-identical is noted where it happens: summation order, Rust's string
 * order, Rust's number formatting.
 */

import {
  ConfigError,
  bool,
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
 * @property {boolean} perSubscription also one document per subscription
 */

/** The fields of the Rust adapter's `Config`, in its order. */
const FIELDS = new Map([
  ['currency', string],
  ['group_by_tag', string],
  ['rates', mapOf(f64)],
  ['per_subscription', bool],
]);
/** The fields a config must have. */
const REQUIRED = ['currency', 'group_by_tag', 'rates'];

/**
 * Parses and checks the config JSON: the Rust adapter's checks, in its
 * order, with its reasons.
 * @param {string} json
 * @returns {Config}
 * @throws {ConfigError} saying what to fix
 */
export function parseConfig(json) {
  const config = readConfig(json, FIELDS, REQUIRED);
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
  return {
    currency: config.currency,
    groupByTag: config.group_by_tag,
    rates: rateLookup(config.rates),
    perSubscription: config.per_subscription === true,
  };
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
    const unrated = new Set();
    let piece = [HEADER];
    let size = HEADER.length;
    for (const row of this.sortedRows()) {
      const meterId = this.names[row.meter];
      if (!config.rates.has(asciiLower(meterId))) unrated.add(meterId);
      const line = this.line(row, config, catalog);
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

  /**
   * Each subscription's own CSV: the header, then that subscription's rows
   * of `render`, in the same order; subscriptions one after the other in
   * Rust's order of their ids, each CSV handed to `write(subscription,
   * piece)` in pieces of about 64 KiB.
   * @param {Config} config
   * @param {Map<string, {name: string, unit: string}>} catalog by lower-case meter id
   * @param {(subscription: string, piece: string) => void} write
   */
  renderPerSubscription(config, catalog, write) {
    const rank = ranks(this.names);
    // Stable: each subscription's rows keep the order of the whole CSV.
    const rows = this.sortedRows(rank).sort((a, b) => rank[a.subscription] - rank[b.subscription]);
    let current;
    let piece = [];
    let size = 0;
    for (const row of rows) {
      const subscription = this.names[row.subscription];
      if (subscription !== current) {
        if (current !== undefined) write(current, piece.join(''));
        current = subscription;
        piece = [HEADER];
        size = HEADER.length;
      }
      const line = this.line(row, config, catalog);
      piece.push(line);
      size += line.length;
      if (size >= PIECE_CHARS) {
        write(subscription, piece.join(''));
        piece = [];
        size = 0;
      }
    }
    if (current !== undefined && piece.length > 0) write(current, piece.join(''));
  }

  /**
   * The output rows ordered by day, group, subscription and meter (names
   * in Rust's byte order).
   * @param {Int32Array} [rank] each name's place in that order
   */
  sortedRows(rank = ranks(this.names)) {
    return [...this.sums.values()].sort(
      (a, b) =>
        a.day - b.day ||
        rank[a.group] - rank[b.group] ||
        rank[a.subscription] - rank[b.subscription] ||
        rank[a.meter] - rank[b.meter],
    );
  }

  /**
   * One output row (a meter without a rate is rated at 0).
   * @param {{day: number, group: number, subscription: number, meter: number, quantity: number}} row
   * @param {Config} config
   * @param {Map<string, {name: string, unit: string}>} catalog
   */
  line({ day, group, subscription, meter, quantity }, config, catalog) {
    const meterId = this.names[meter];
    const rate = config.rates.get(asciiLower(meterId)) ?? 0;
    const known = catalog.get(asciiLower(meterId));
    return (
      `${isoDate(day)},${csvField(this.names[group])},${csvField(this.names[subscription])},` +
      `${csvField(meterId)},${csvField(known ? known.name : '')},${csvField(known ? known.unit : '')},` +
      `${fixed6(quantity)},${fixed6(rate)},${fixed6(quantity * rate)},${config.currency}\n`
    );
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
