/**
 * The invoice itself, free of the component imports so Node can test it:
 * the config, usage summed into invoice lines, the JSON requests, and what
 * an answer of the billing API means. The wire format is the Rust
 * billing-webhook adapter's (see invoice-lines/adapter.js), so one billing
 * API serves both.
 */

import {
  ConfigError,
  checkCurrency,
  f64,
  mapOf,
  optional,
  rateLookup,
  rateProblem,
  readConfig,
  sortedIds,
  string,
  usize,
} from '../lib/config.js';
import { decimal, micros, roundToI64 } from '../lib/numbers.js';
import { asciiLower, compareUtf8, fromUtf8Lossy, squashWhitespace, utf8Length } from '../lib/text.js';
import { DAY, divEuclid, int, isoDate, isoTime } from '../lib/time.js';

/** Lines per request unless the config says otherwise. */
export const DEFAULT_BATCH_SIZE = 500;
/** The most lines one request may carry. */
export const MAX_BATCH_SIZE = 5_000;
/** The largest request body the host sends (`outbound-request.body`). */
export const MAX_BODY_BYTES = 1 << 20;
/** How much of an error answer's body is quoted in the failure. */
const EXCERPT_CHARS = 200;
/** Headers the config may not set: the host sets the idempotency key, the adapter frames its JSON. */
const RESERVED_HEADERS = [
  'idempotency-key',
  'content-type',
  'content-length',
  'host',
  'transfer-encoding',
  'connection',
];

/**
 * @typedef {object} Config
 * @property {string} endpoint where invoice lines are POSTed
 * @property {string} currency ISO 4217 code of every amount
 * @property {Map<string, number>} rates price per unit by lower-case meter id
 * @property {number} batchSize most lines per request
 * @property {[string, string][]} headers static headers of every request, in name order
 * @property {string} source names this tally; prefixes every line id
 */

/** The fields of the Rust billing-webhook's config, in its order. */
const FIELDS = new Map([
  ['endpoint', string],
  ['currency', string],
  ['rates', mapOf(f64)],
  ['batch_size', optional(usize)],
  ['headers', mapOf(string)],
  ['source', optional(string)],
]);

/**
 * Parses and checks the config JSON: the billing-webhook adapter's checks,
 * in its order, with its reasons.
 * @param {string} json
 * @returns {Config}
 * @throws {ConfigError} saying what to fix
 */
export function parseConfig(json) {
  const config = readConfig(json, FIELDS, ['endpoint', 'currency', 'rates']);
  const problem = endpointProblem(config.endpoint);
  if (problem) throw new ConfigError(`config: endpoint: ${problem}`);
  checkCurrency(config.currency);
  const seen = new Set();
  for (const meter of sortedIds(config.rates)) {
    const rateRefused = rateProblem(meter, config.rates.get(meter));
    if (rateRefused) throw new ConfigError(rateRefused);
    // Meter ids ignore case, so two spellings of one id would be two prices.
    if (seen.has(asciiLower(meter)))
      throw new ConfigError(`config: meter '${meter}' has two rates (ids ignore case)`);
    seen.add(asciiLower(meter));
  }
  const batchSize = config.batch_size ?? DEFAULT_BATCH_SIZE;
  if (batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
    throw new ConfigError(`config: batch_size must be from 1 to ${MAX_BATCH_SIZE}, not ${batchSize}`);
  }
  const table = config.headers ?? new Map();
  const headers = [...table.keys()].sort(compareUtf8).map((name) => {
    const headerRefused = headerProblem(name, table.get(name));
    if (headerRefused) throw new ConfigError(`config: headers: ${headerRefused}`);
    return /** @type {[string, string]} */ ([name, table.get(name)]);
  });
  const source = config.source ?? 'tally';
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(source)) {
    throw new ConfigError(`config: source '${source}' must be 1 to 64 letters, digits, '-', '_' or '.'`);
  }
  return {
    endpoint: config.endpoint,
    currency: config.currency,
    rates: rateLookup(config.rates),
    batchSize,
    headers,
    source,
  };
}

/**
 * What is wrong with an endpoint, if anything: it must be an absolute
 * `http`/`https` URL with a host and no credentials. (Whether its origin is
 * allowed is the host's call, at send time.)
 * @param {string} endpoint
 * @returns {string | undefined}
 */
function endpointProblem(endpoint) {
  const rest = /^https?:\/\//i.test(endpoint) ? endpoint.replace(/^https?:\/\//i, '') : undefined;
  if (rest === undefined) return `'${endpoint}' is not an http or https URL`;
  if (/[\x00-\x20\x7f]/.test(endpoint)) return `'${endpoint}' has spaces or control characters`;
  if (endpoint.includes('#')) return `'${endpoint}' has a fragment`;
  const authority = rest.split(/[/?]/)[0];
  if (authority.includes('@')) return 'credentials go in `headers`, not in the URL';
  // An IPv6 literal has colons of its own: a port follows the `]`.
  const colon = authority.lastIndexOf(':');
  const hasPort = colon >= 0 && !authority.slice(colon + 1).includes(']');
  const host = hasPort ? authority.slice(0, colon) : authority;
  const port = hasPort ? authority.slice(colon + 1) : undefined;
  if (host === '' || host === '[]') return `'${endpoint}' has no host`;
  if (port !== undefined && !(/^\+?[0-9]+$/.test(port) && Number(port) <= 65_535)) {
    return `'${endpoint}' has an invalid port '${port}'`;
  }
  return undefined;
}

/**
 * What is wrong with a configured header, if anything. Never quotes the
 * value: it is likely a secret.
 * @param {string} name
 * @param {string} value
 */
function headerProblem(name, value) {
  if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) return `'${name}' is not a header name`;
  if (RESERVED_HEADERS.includes(asciiLower(name))) {
    return `'${name}' is set by tally (the host sets Idempotency-Key; the adapter frames its JSON)`;
  }
  if (!/^[\t\x20-\x7e]*$/.test(value)) return `the value of '${name}' must be printable ASCII on one line`;
  return undefined;
}

/**
 * Usage summed per subscription, meter and usage day (UTC), names interned
 * once per batch.
 */
export class Usage {
  constructor() {
    /** @type {Map<string, {subscription: number, meter: number, day: number, quantity: number}>} */
    this.sums = new Map();
    /** @type {string[]} */
    this.names = [];
    /** @type {Map<string, number>} */
    this.ids = new Map();
    this.rowsRead = 0;
  }

  /**
   * Adds a `usage-batch`.
   * @param {any} batch
   */
  add(batch) {
    const { strings, subscriptionId, meterId, usageStart, quantity } = batch;
    const local = new Array(strings.length).fill(-1);
    const idOf = (index) => (local[index] >= 0 ? local[index] : (local[index] = this.intern(strings[index])));
    for (let row = 0; row < quantity.length; row++) {
      const subscription = idOf(subscriptionId[row]);
      const meter = idOf(meterId[row]);
      const day = divEuclid(int(usageStart[row]), DAY);
      const key = `${subscription},${meter},${day}`;
      const sum = this.sums.get(key);
      if (sum) sum.quantity += quantity[row];
      else this.sums.set(key, { subscription, meter, day, quantity: 0 + quantity[row] });
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

  /**
   * The invoice lines, ordered by subscription, day and meter (so the same
   * usage always gives the same requests), and the meters that had no rate
   * (invoiced at 0).
   * @param {Config} config
   * @param {[number, number]} window reported-time window, Unix seconds
   * @param {Map<string, {name: string, unit: string}>} catalog by lower-case meter id
   * @returns {{lines: Line[], unrated: string[]}}
   */
  lines(config, window, catalog) {
    const name = (id) => this.names[id];
    const sorted = [...this.sums.values()].sort(
      (a, b) =>
        compareUtf8(name(a.subscription), name(b.subscription)) ||
        a.day - b.day ||
        compareUtf8(name(a.meter), name(b.meter)),
    );
    const unrated = new Set();
    const period = `${isoTime(window[0])}..${isoTime(window[1])}`;
    const lines = sorted.map(({ subscription, meter, day, quantity }) => {
      const meterId = name(meter);
      let rate = config.rates.get(asciiLower(meterId));
      if (rate === undefined) {
        unrated.add(meterId);
        rate = 0;
      }
      const known = catalog.get(asciiLower(meterId));
      // The amount is the rounded quantity times the rate, so a receiver
      // can recompute every line from what it was sent.
      const quantityMicros = roundToI64(quantity * 1e6);
      return {
        id: `${config.source}/${period}/${name(subscription)}/${asciiLower(meterId)}/${isoDate(day)}`,
        subscriptionId: name(subscription),
        meterId,
        meterName: known ? known.name : '',
        unit: known ? known.unit : '',
        period: [day * DAY, (day + 1) * DAY],
        quantityMicros,
        unitPrice: rate,
        amountMicros: roundToI64(Number(quantityMicros) * rate),
      };
    });
    return { lines, unrated: [...unrated].sort(compareUtf8) };
  }
}

/**
 * One invoice line: a subscription's use of a meter on a usage day, rated.
 * @typedef {object} Line
 * @property {string} id stable across runs of the same window
 * @property {string} subscriptionId
 * @property {string} meterId in the catalog's spelling
 * @property {string} meterName from the catalog; empty for a meter it does not know
 * @property {string} unit from the catalog; empty for a meter it does not know
 * @property {[number, number]} period usage day [start, end), Unix seconds
 * @property {bigint} quantityMicros quantity in millionths of the meter's unit
 * @property {number} unitPrice from the rate card (0 for an unrated meter)
 * @property {bigint} amountMicros amount in millionths of the currency
 */

/**
 * A line's JSON object, as it goes on the wire. Numbers are decimal strings,
 * so no precision is lost to a JSON parser's floating point.
 * @param {Line} line
 * @param {string} currency
 */
export function lineJson(line, currency) {
  return JSON.stringify({
    id: line.id,
    subscription_id: line.subscriptionId,
    meter_id: line.meterId,
    meter_name: line.meterName,
    unit: line.unit,
    period_start: isoTime(line.period[0]),
    period_end: isoTime(line.period[1]),
    quantity: micros(line.quantityMicros),
    unit_price: decimal(line.unitPrice),
    amount: micros(line.amountMicros),
    currency,
  });
}

/**
 * A request body: what every request of a run says about itself, then its
 * lines (JSON objects, already serialised).
 * @param {{source: string, runId: string, correction: boolean, window: [number, number], index: number, count: number, currency: string}} envelope
 * @param {string[]} lines
 */
export function body(envelope, lines) {
  const head = JSON.stringify({
    source: envelope.source,
    run_id: envelope.runId,
    correction: envelope.correction,
    window: { start: isoTime(envelope.window[0]), end: isoTime(envelope.window[1]) },
    batch: { index: envelope.index, count: envelope.count },
    currency: envelope.currency,
  });
  return `${head.slice(0, -1)},"lines":[${lines.join(',')}]}`;
}

/**
 * Splits lines into requests of at most `batchSize` lines whose bodies stay
 * within `budget` bytes (the envelope's share already taken off). Greedy
 * and in order, so the same lines always split the same way; a line over
 * the budget still goes, alone.
 * @param {string[]} lines
 * @param {number} batchSize
 * @param {number} budget
 * @returns {[number, number][]} [start, end) of each request's lines
 */
export function batches(lines, batchSize, budget) {
  const out = [];
  let start = 0;
  let bytes = 0;
  lines.forEach((line, i) => {
    const size = utf8Length(line) + 1;
    if (i - start === batchSize || (i > start && bytes + size > budget)) {
      out.push([start, i]);
      start = i;
      bytes = 0;
    }
    bytes += size;
  });
  if (start < lines.length) out.push([start, lines.length]);
  return out;
}

/**
 * @typedef {{accepted: true} | {accepted: false, transient: boolean, reason: string}} Verdict
 */

/**
 * Judges an answer: 2xx accepted; 408, 429 and 5xx transient (worth
 * retrying the run under the same keys); anything else (other 4xx, an
 * unfollowed redirect) permanent.
 * @param {number} status
 * @param {[string, string][]} headers
 * @param {ArrayLike<number>} bodyBytes
 * @returns {Verdict}
 */
export function judge(status, headers, bodyBytes) {
  const header = (wanted) => headers.find(([name]) => asciiLower(name) === wanted)?.[1];
  let reason = `the billing API answered ${status}: ${excerpt(bodyBytes)}`;
  if (status >= 200 && status <= 299) return { accepted: true };
  if (status === 408 || status === 429 || (status >= 500 && status <= 599)) {
    const after = header('retry-after');
    if (after !== undefined) reason += ` (Retry-After: ${after})`;
    return { accepted: false, transient: true, reason };
  }
  if (status >= 300 && status <= 399) {
    reason += ` (redirects are not followed; set the endpoint to ${header('location') ?? 'the final URL'})`;
  }
  return { accepted: false, transient: false, reason };
}

/**
 * What a request that was not made or not answered (a `send-error`) means.
 * @param {{tag: string, val?: unknown}} error
 * @returns {Verdict}
 */
export function judgeError(error) {
  const { tag, val } = error;
  switch (tag) {
    case 'timeout':
      return { accepted: false, transient: true, reason: `no answer in time: ${val}` };
    case 'failed':
      return { accepted: false, transient: true, reason: `the request failed: ${val}` };
    case 'not-allowed':
      return {
        accepted: false,
        transient: false,
        reason: `not sent: ${val} (add the endpoint's origin to the installation's allowed_outbound_hosts)`,
      };
    case 'too-large':
      return {
        accepted: false,
        transient: false,
        reason: `a request or its answer is over the host's limit of ${val} bytes`,
      };
    case 'limit-reached':
      return {
        accepted: false,
        transient: false,
        reason: `the host's cap of ${val} requests per run is reached; raise batch_size`,
      };
    default:
      return { accepted: false, transient: false, reason: `send failed: ${tag}: ${val}` };
  }
}

/**
 * The start of a body, on one line, for a failure reason.
 * @param {ArrayLike<number>} bytes
 */
function excerpt(bytes) {
  const flat = squashWhitespace(fromUtf8Lossy(bytes));
  if (flat === '') return '(empty body)';
  const chars = Array.from(flat);
  return chars.length > EXCERPT_CHARS ? `${chars.slice(0, EXCERPT_CHARS).join('')}…` : flat;
}
