/**
 * Strings as Rust treats them: UTF-8 bytes, ordered byte by byte, ASCII-only
 * case folding, Unicode `White_Space`.
 */

/**
 * Rust's `str` order (bytes of UTF-8, i.e. code points). JavaScript's `<`
 * compares UTF-16 units, which sorts U+E000–U+FFFF after every astral
 * character: `"\uff41" < "\u{1F4B6}"` is false in JavaScript, true in Rust.
 * @param {string} a
 * @param {string} b
 * @returns {number} negative, zero or positive
 */
export function compareUtf8(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      // From U+D800 up, surrogates (astral characters) go after U+E000–U+FFFF.
      return x >= 0xd800 && y >= 0xd800 ? codePointRank(x) - codePointRank(y) : x - y;
    }
  }
  return a.length - b.length;
}

const codePointRank = (unit) => (unit >= 0xe000 ? unit - 0x800 : unit + 0x2000);

/**
 * Rust's `to_ascii_lowercase`: only A–Z change (meter ids compare this way).
 * @param {string} text
 */
export function asciiLower(text) {
  return text.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/** Rust's `char::is_whitespace` (Unicode White_Space); JavaScript's `\s` differs (U+FEFF, U+0085). */
const WHITESPACE = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const BLANK = new RegExp(`^[${WHITESPACE}]*$`);
const RUNS = new RegExp(`[${WHITESPACE}]+`);

/** Whether Rust's `text.trim().is_empty()`. */
export const isBlank = (text) => BLANK.test(text);

/** Rust's `text.split_whitespace().collect::<Vec<_>>().join(" ")`. */
export const squashWhitespace = (text) => text.split(RUNS).filter(Boolean).join(' ');

/**
 * A CSV field, quoted when it holds `,`, `"`, CR or LF (as the Rust adapters do).
 * @param {string} value
 */
export function csvField(value) {
  return /[,"\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/**
 * Bytes of `text` in UTF-8 (native string functions: a character loop costs
 * ~150 ns a character in QuickJS, ten times these).
 * @param {string} text well-formed (strings from the host are)
 */
export const utf8Length = (text) => unescape(encodeURIComponent(text)).length;

/**
 * `text` as UTF-8: with `TextEncoder` where the engine has one (Node,
 * StarlingMonkey); in QuickJS, which has none, natively through the
 * "binary string" of `encodeURIComponent` and base64.
 * @param {string} text well-formed (strings from the host are)
 * @returns {Uint8Array}
 */
export function utf8(text) {
  if (typeof TextEncoder === 'function') return new TextEncoder().encode(text);
  return /** @type {any} */ (Uint8Array).fromBase64(btoa(unescape(encodeURIComponent(text))));
}

/**
 * Bytes as text, invalid UTF-8 replaced (for quoting an answer's body).
 * @param {ArrayLike<number>} bytes
 */
export function fromUtf8Lossy(bytes) {
  if (typeof TextDecoder === 'function') return new TextDecoder().decode(Uint8Array.from(bytes));
  let binary = '';
  for (let i = 0; i < bytes.length; i += 4096) {
    binary += String.fromCharCode(...Array.prototype.slice.call(bytes, i, i + 4096));
  }
  try {
    return decodeURIComponent(escape(binary));
  } catch {
    return binary.replace(/[\x80-\xff]/g, '\ufffd');
  }
}
