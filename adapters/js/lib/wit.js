/**
 * What differs between the two JavaScript engines at the component
 * boundary, in one place (see ../README.md):
 *
 * - `s64`/`u64` are Numbers in QuickJS and BigInts in StarlingMonkey;
 *   number lists are Arrays in QuickJS and typed arrays in StarlingMonkey
 *   (the code only indexes them, so either works).
 * - A failed import call (`result<_, E>`) throws an Error whose `payload`
 *   is the `{tag, val}` of `E`, in both.
 * - An export returning `result<T, E>` returns `T`, or throws `E` itself
 *   (a `{tag, val}` variant, or a string). A thrown Error (a bug) traps,
 *   so the run fails with the JavaScript stack in its log — except in
 *   QuickJS where `E` is a string (`validate-config`): it becomes `Err`
 *   with the Error's message.
 */

import { asciiLower } from './text.js';

/**
 * The `export-request` record as `export` receives it.
 * @typedef {object} ExportRequest
 * @property {string} runId stable across retries of the same run
 * @property {{start: number | bigint, end: number | bigint}} window reported-time window, Unix seconds
 * @property {'hourly' | 'daily'} granularity
 * @property {boolean} correction whether the run replaces an earlier export of the window
 */

/**
 * The WIT error a failed import call carried; rethrows anything else (a bug).
 * @param {unknown} caught
 * @returns {{tag: string, val?: unknown}}
 */
export function witError(caught) {
  const payload = /** @type {any} */ (caught)?.payload;
  if (payload && typeof payload.tag === 'string') return payload;
  throw caught;
}

/**
 * How to hand a count back as a WIT `u64` in this engine: like the `s64`
 * `sample` arrived (BigInt in StarlingMonkey, Number in QuickJS).
 * @param {number | bigint} sample
 * @returns {(n: number) => number | bigint}
 */
export const u64Like = (sample) => (typeof sample === 'bigint' ? BigInt : Number);

/** `export-error` variants, to be thrown from `export`. */
export const invalidConfig = (reason) => ({ tag: 'invalid-config', val: reason });
export const transient = (reason) => ({ tag: 'transient', val: reason });
export const permanent = (reason) => ({ tag: 'permanent', val: reason });

/**
 * A WIT error as text for a reason: `invalid-window: …`.
 * @param {{tag: string, val?: unknown}} error
 */
export const errorText = (error) => (error.val === undefined ? error.tag : `${error.tag}: ${error.val}`);

/**
 * The meter catalog by lower-case id (a later spelling wins, as in Rust's
 * `collect` into a map).
 * @param {{id: string, name: string, unit: string}[]} meters
 */
export function catalogOf(meters) {
  return new Map(meters.map((m) => [asciiLower(m.id), { name: m.name, unit: m.unit }]));
}
