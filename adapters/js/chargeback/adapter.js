/**
 * chargeback-js: the chargeback CSV for Power BI, in JavaScript. The same
 * config and the same `chargeback.csv`, byte for byte, as the Rust
 * `chargeback-csv` adapter (tests/js_adapters.rs checks it).
 *
 * Config (the installation's `[config]` table):
 *
 *     currency = "EUR"                 # ISO 4217
 *     group_by_tag = "cost-center"     # rows without the tag go to "unallocated"
 *     per_subscription = true          # optional (default false): also one CSV per subscription
 *     [rates]                          # price per unit of each meter (ids ignore case)
 *     "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
 *
 * Writes `chargeback.csv`: one row per usage day, group, subscription and
 * meter, with quantity, rate and cost. Meters without a rate are exported at
 * a rate of 0 and named once in the log, so nothing disappears silently.
 * With `per_subscription = true`, also `chargeback-<subscription>.csv` for
 * each subscription read (`append-for`), as the Rust adapter writes them.
 * A config is refused as the Rust adapter refuses it, in its words.
 */

import { meters, query } from 'tally:billing/usage@0.2.0';
import { append, appendFor } from 'tally:billing/output@0.2.0';
import { write as log } from 'tally:billing/log@0.2.0';

import { ConfigError } from '../lib/config.js';
import { documentName } from '../lib/names.js';
import { utf8 } from '../lib/text.js';
import { catalogOf, errorText, invalidConfig, permanent, transient, u64Like, witError } from '../lib/wit.js';
import { Chargeback, parseConfig } from './rating.js';

const DOCUMENT = 'chargeback.csv';
const PER_SUBSCRIPTION = 'chargeback-';

/** The `tally:billing/adapter` export. */
export const adapter = {
  describe() {
    return {
      name: 'chargeback-js',
      version: '0.1.0',
      produces: [DOCUMENT, `${PER_SUBSCRIPTION}{subscription}.csv`],
    };
  },

  /** @param {string} config */
  validateConfig(config) {
    try {
      parseConfig(config);
    } catch (e) {
      throw e instanceof ConfigError ? e.message : e;
    }
  },

  /**
   * @param {import('../lib/wit.js').ExportRequest} request
   * @param {string} json
   */
  export(request, json) {
    let config;
    try {
      config = parseConfig(json);
    } catch (e) {
      throw e instanceof ConfigError ? invalidConfig(e.message) : e;
    }
    let cursor;
    try {
      cursor = query(request.window, request.granularity, undefined);
    } catch (e) {
      throw transient(errorText(witError(e)));
    }
    const chargeback = new Chargeback(config.groupByTag);
    for (let batch = cursor.next(); batch; batch = cursor.next()) chargeback.add(batch);

    const catalog = catalogOf(meters());
    let unrated;
    const documents = [DOCUMENT];
    try {
      unrated = chargeback.render(config, catalog, (piece) => append(DOCUMENT, 'text/csv', utf8(piece)));
      if (config.perSubscription) {
        chargeback.renderPerSubscription(config, catalog, (subscription, piece) => {
          const name = documentName(PER_SUBSCRIPTION, subscription, '.csv');
          appendFor(subscription, name, 'text/csv', utf8(piece));
          if (documents[documents.length - 1] !== name) documents.push(name);
        });
      }
    } catch (e) {
      throw permanent(errorText(witError(e)));
    }
    for (const meter of unrated) log('warn', `meter ${meter} has no rate in the rate card; exported at 0`);
    log('info', `${chargeback.rowsRead} usage rows rated into ${chargeback.rows} chargeback rows`);
    const u64 = u64Like(request.window.start);
    return { rowsRead: u64(chargeback.rowsRead), rowsWritten: u64(chargeback.rows), documents };
  },
};
