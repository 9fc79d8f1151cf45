/**
 * Reading an installation's `[config]` (JSON) the way the Rust adapters'
 * serde structs do (`#[serde(deny_unknown_fields)]`): fields in document
 * order, each checked as it comes, an unknown field refused, then missing
 * ones; refusals in serde's words (less its "at line 1 column N"), so a
 * JavaScript adapter refuses a config with the Rust adapter's reason.
 *
 * Not seen: a field given twice (`JSON.parse` keeps the last; serde
 * refuses), and `1.0` versus `1` (both are the Number 1 here).
 */

import { decimal } from './numbers.js';
import { asciiLower, compareUtf8 } from './text.js';

/** What `validate-config` returns as `err` and `export` as `invalid-config`. */
export class ConfigError extends Error {}

/**
 * @template T
 * @typedef {(value: unknown) => T} Field checks and converts one field's JSON value
 */

/**
 * The config's fields, converted.
 * @param {string} json
 * @param {Map<string, Field<unknown>>} fields every allowed field, in declaration order
 * @param {string[]} required those that must be present
 * @returns {Record<string, any>} the fields present
 */
export function readConfig(json, fields, required) {
  let value;
  try {
    value = JSON.parse(json);
  } catch (e) {
    throw new ConfigError(`config: ${e.message}`);
  }
  if (!isObject(value)) throw refusal(value, 'struct Config');
  const config = Object.create(null);
  for (const [name, field] of Object.entries(value)) {
    const convert = fields.get(name);
    if (!convert) throw new ConfigError(`config: unknown field \`${name}\`, ${expected([...fields.keys()])}`);
    config[name] = convert(field);
  }
  for (const name of required) {
    if (!(name in config)) throw new ConfigError(`config: missing field \`${name}\``);
  }
  return config;
}

/** @type {Field<string>} serde's `String` */
export function string(value) {
  if (typeof value !== 'string') throw refusal(value, 'a string');
  return value;
}

/** @type {Field<boolean>} serde's `bool` */
export function bool(value) {
  if (typeof value !== 'boolean') throw refusal(value, 'a boolean');
  return value;
}

/** @type {Field<number>} serde's `f64` (integers too; JSON.parse makes 1e400 Infinity) */
export function f64(value) {
  if (typeof value !== 'number') throw refusal(value, 'f64');
  if (!Number.isFinite(value)) throw new ConfigError('config: number out of range');
  return value;
}

/** @type {Field<number>} serde's `usize` */
export function usize(value) {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw refusal(value, 'usize');
  if (value < 0) throw new ConfigError(`config: invalid value: integer \`${value}\`, expected usize`);
  return value;
}

/**
 * serde's `Option<T>`: `null` is none.
 * @template T
 * @param {Field<T>} convert
 * @returns {Field<T | undefined>}
 */
export const optional = (convert) => (value) => (value === null ? undefined : convert(value));

/**
 * A map of string keys (serde's `HashMap`/`BTreeMap`), in document order.
 * @template T
 * @param {Field<T>} convert
 * @returns {Field<Map<string, T>>}
 */
export const mapOf = (convert) => (value) => {
  if (!isObject(value)) throw refusal(value, 'a map');
  return new Map(Object.entries(value).map(([key, item]) => [key, convert(item)]));
};

/**
 * Three ASCII capitals (ISO 4217's form).
 * @param {string} code
 */
export function checkCurrency(code) {
  if (!/^[A-Z]{3}$/.test(code)) throw new ConfigError(`config: currency '${code}' is not an ISO 4217 code`);
}

/**
 * The reason a rate is refused (negative or not finite), if it is.
 * @param {string} meter
 * @param {number} rate
 */
export function rateProblem(meter, rate) {
  return Number.isFinite(rate) && rate >= 0
    ? undefined
    : `config: the rate of meter '${meter}' must be a non-negative number, not ${decimal(rate)}`;
}

/**
 * Rates by lower-case meter id (meter ids ignore case). The caller has
 * refused a card naming one meter twice.
 * @param {Map<string, number>} card
 */
export const rateLookup = (card) => new Map([...card].map(([meter, rate]) => [asciiLower(meter), rate]));

/**
 * Meter ids in Rust's string order.
 * @param {Map<string, number>} card
 */
export const sortedIds = (card) => [...card.keys()].sort(compareUtf8);

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
export const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);

/** serde's "invalid type" refusal. */
const refusal = (value, wanted) =>
  new ConfigError(`config: invalid type: ${unexpected(value)}, expected ${wanted}`);

/**
 * serde's `Unexpected` wording for a JSON value.
 * @param {unknown} value
 */
function unexpected(value) {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return `boolean \`${value}\``;
    case 'number':
      return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${decimal(value)}\``;
    case 'string':
      return `string ${JSON.stringify(value)}`;
    default:
      return Array.isArray(value) ? 'sequence' : 'map';
  }
}

/**
 * serde's list of the fields it expected.
 * @param {string[]} names
 */
function expected(names) {
  const quoted = names.map((name) => `\`${name}\``);
  if (quoted.length === 1) return `expected ${quoted[0]}`;
  if (quoted.length === 2) return `expected ${quoted[0]} or ${quoted[1]}`;
  return `expected one of ${quoted.join(', ')}`;
}
