/**
 * {{name}}: a tally billing adapter. It sums the usage of each meter over
 * the export window, prices it with an optional rate card and writes
 * `summary.csv`.
 *
 * Config (the installation's `[config]` table, handed over as JSON):
 *
 *     currency = "EUR"
 *     [rates]                      # price per unit; meters without one cost 0
 *     "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
 *
 * The contract is `wit/billing-adapter.wit`: start there. In this engine
 * (QuickJS) `s64`/`u64` are Numbers; a failed import call throws an Error
 * whose `payload` is the WIT error; `export` throws an `export-error`
 * (`{tag, val}`) to fail, and `validateConfig` throws a string.
 */

import { meters, query } from 'tally:billing/usage@0.2.0';
import { append } from 'tally:billing/output@0.2.0';
import { write as log } from 'tally:billing/log@0.2.0';

const DOCUMENT = 'summary.csv';

/**
 * Parses and checks a configuration; throws a string saying what to fix.
 * @param {string} text
 */
function parseConfig(text) {
  let config;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw `config: ${e.message}`;
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw 'config: expected a table';
  const unknown = Object.keys(config).filter((key) => key !== 'currency' && key !== 'rates');
  if (unknown.length) throw `config: unknown field(s) ${unknown.sort().join(', ')}`;
  const { currency, rates = {} } = config;
  if (typeof currency !== 'string' || !/^[A-Z]{3}$/.test(currency)) {
    throw `config: currency '${currency}' is not an ISO 4217 code`;
  }
  const byMeter = new Map();
  for (const [meter, rate] of Object.entries(rates)) {
    if (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0) {
      throw `config: the rate of '${meter}' must be a non-negative number, not ${rate}`;
    }
    byMeter.set(meter.toLowerCase(), rate); // meter ids compare ignoring case
  }
  return { currency, rates: byMeter };
}

/** A CSV field, quoted when it holds a comma, a quote or a line break. */
const csvField = (text) => (/[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);

/** UTF-8 bytes of a string (QuickJS has no TextEncoder). */
const utf8 = (text) => Uint8Array.from(unescape(encodeURIComponent(text)), (c) => c.charCodeAt(0));

/** The `tally:billing/adapter` export. */
export const adapter = {
  describe() {
    return { name: '{{name}}', version: '0.1.0', produces: [DOCUMENT] };
  },

  validateConfig(config) {
    parseConfig(config);
  },

  export(request, json) {
    let config;
    try {
      config = parseConfig(json);
    } catch (reason) {
      throw { tag: 'invalid-config', val: String(reason) };
    }
    let cursor;
    try {
      cursor = query(request.window, request.granularity, undefined);
    } catch (e) {
      throw { tag: 'transient', val: `query refused: ${e.payload?.tag ?? e}` };
    }
    // Usage arrives in column batches; strings are indexes into `batch.strings`.
    const quantities = new Map();
    let rowsRead = 0;
    for (let batch = cursor.next(); batch; batch = cursor.next()) {
      for (let row = 0; row < batch.quantity.length; row++) {
        const meter = batch.strings[batch.meterId[row]]; // in the catalog's spelling
        quantities.set(meter, (quantities.get(meter) ?? 0) + batch.quantity[row]);
      }
      rowsRead += batch.quantity.length;
    }
    const catalog = new Map(meters().map((m) => [m.id, m]));
    const lines = ['meter_id,meter_name,unit,quantity,rate,cost,currency'];
    for (const meter of [...quantities.keys()].sort()) {
      const { name = '', unit = '' } = catalog.get(meter) ?? {};
      const rate = config.rates.get(meter.toLowerCase()) ?? 0;
      const quantity = quantities.get(meter);
      lines.push(
        [meter, csvField(name), csvField(unit), quantity.toFixed(6), rate, (quantity * rate).toFixed(6), config.currency].join(','),
      );
    }
    try {
      append(DOCUMENT, 'text/csv', utf8(lines.join('\n') + '\n'));
    } catch (e) {
      throw { tag: 'permanent', val: `writing ${DOCUMENT}: ${e.payload?.tag ?? e}` };
    }
    log('info', `${rowsRead} usage rows summed into ${quantities.size} meters`);
    return { rowsRead, rowsWritten: quantities.size, documents: [DOCUMENT] };
  },
};
