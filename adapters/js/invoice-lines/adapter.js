/**
 * invoice-lines-js: rated usage pushed to an external billing system's HTTP
 * API as invoice lines, through the host's `output.send`. A JavaScript
 * adapter speaking the same config and wire format as the Rust
 * billing-webhook adapter (adapters/billing-webhook/src/lib.rs documents
 * both in full), so the same billing API and manifest serve either.
 *
 * Config (the installation's `[config]` table):
 *
 *     endpoint = "https://billing.example/v1/invoice-lines"  # POSTed to; its origin must be in allowed_outbound_hosts
 *     currency = "EUR"                                        # ISO 4217
 *     batch_size = 500                                        # lines per request (1–5,000; default 500)
 *     source = "tally"                                        # names this tally; prefixes line ids (default "tally")
 *     [headers]                                               # static headers of every request, e.g. an API key
 *     "X-Api-Key" = "…"
 *     [rates]                                                 # price per unit of each meter (ids ignore case)
 *     "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
 *
 * One invoice line per subscription, meter and usage day (UTC) of the usage
 * reported in the run's window. Lines are ordered by subscription, day and
 * meter and cut into requests of at most `batch_size` lines (and 1 MiB), so
 * a run sends the same requests in the same order every time it is tried:
 * with the host's `Idempotency-Key: <run-id>.<n>`, a receiver that drops
 * keys it already has bills nothing twice when a failed run is retried.
 *
 * Answers: 2xx accepted. 408, 429, 5xx, a timeout or a failed connection:
 * the run fails as `transient` and the host retries it later under the same
 * run id. Any other answer (4xx, an unfollowed redirect) or an endpoint whose
 * origin is not allowed: `permanent`, with the status and the start of the
 * body. After the last request it writes `invoice-summary.json`.
 */

import { meters, query } from 'tally:billing/usage@0.1.0';
import { append, send } from 'tally:billing/output@0.1.0';
import { write as log } from 'tally:billing/log@0.1.0';

import { ConfigError } from '../lib/config.js';
import { micros } from '../lib/numbers.js';
import { utf8 } from '../lib/text.js';
import { int, isoTime } from '../lib/time.js';
import { catalogOf, errorText, invalidConfig, permanent, transient, u64Like, witError } from '../lib/wit.js';
import { MAX_BODY_BYTES, Usage, batches, body, judge, judgeError, lineJson, parseConfig } from './invoice.js';

const NAME = 'invoice-lines-js';
const VERSION = '0.1.0';
const DOCUMENT = 'invoice-summary.json';

/** The `tally:billing/adapter` export. */
export const adapter = {
  describe() {
    return { name: NAME, version: VERSION, produces: [DOCUMENT] };
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
    // Lines are per day: daily rows are the hourly ones summed, and fewer.
    let cursor;
    try {
      cursor = query(request.window, 'daily', undefined);
    } catch (e) {
      const error = witError(e);
      throw error.tag === 'unavailable' ? transient(String(error.val)) : permanent(String(error.val));
    }
    const usage = new Usage();
    for (let batch = cursor.next(); batch; batch = cursor.next()) usage.add(batch);

    /** @type {[number, number]} */
    const window = [int(request.window.start), int(request.window.end)];
    const { lines, unrated } = usage.lines(config, window, catalogOf(meters()));
    for (const meter of unrated) log('warn', `meter ${meter} has no rate in the rate card; invoiced at 0`);

    const { source, currency } = config;
    const envelope = (index, count) => ({
      source,
      runId: request.runId,
      correction: request.correction,
      window,
      index,
      count,
      currency,
    });
    const wire = lines.map((line) => lineJson(line, config.currency));
    // The envelope's share of a body, with the widest batch numbers a run can have.
    const overhead = utf8(body(envelope(999_999, 999_999), [])).length;
    const requests = batches(wire, config.batchSize, MAX_BODY_BYTES - overhead);
    const endpoint = config.endpoint.split(/[?#]/)[0];
    log(
      'info',
      `${usage.rowsRead} usage rows rated into ${lines.length} invoice lines; sending them in ${requests.length} requests to ${endpoint}`,
    );

    const headers = [
      ['Content-Type', 'application/json'],
      ['Accept', 'application/json'],
      ['User-Agent', `tally-${NAME}/${VERSION}`],
      ...config.headers,
    ];
    requests.forEach(([start, end], i) => {
      const [index, count] = [i + 1, requests.length];
      let verdict;
      try {
        const answer = send({
          method: 'POST',
          url: config.endpoint,
          headers,
          body: utf8(body(envelope(index, count), wire.slice(start, end))),
        });
        verdict = judge(answer.status, answer.headers, answer.body);
      } catch (e) {
        verdict = judgeError(witError(e));
      }
      if (verdict.accepted) return;
      const reason = `request ${index} of ${count}: ${verdict.reason}`;
      log('error', reason);
      if (index > 1) {
        log(
          'info',
          `requests 1 to ${index - 1} were accepted; a retry of this run sends them again under the same idempotency keys`,
        );
      }
      throw verdict.transient ? transient(reason) : permanent(reason);
    });

    const total = lines.reduce((sum, line) => sum + line.amountMicros, 0n);
    const document = {
      run_id: request.runId,
      correction: request.correction,
      window: { start: isoTime(window[0]), end: isoTime(window[1]) },
      // The endpoint without its query, which may carry a secret.
      endpoint,
      requests: requests.length,
      lines: lines.length,
      rows_read: usage.rowsRead,
      totals: { [config.currency]: micros(total) },
      unrated_meters: unrated,
    };
    try {
      append(DOCUMENT, 'application/json', utf8(`${JSON.stringify(document, null, 2)}\n`));
    } catch (e) {
      throw permanent(`writing ${DOCUMENT}: ${errorText(witError(e))}`);
    }
    log(
      'info',
      `${lines.length} invoice lines accepted in ${requests.length} requests; total ${micros(total)} ${config.currency}`,
    );
    const u64 = u64Like(request.window.start);
    return { rowsRead: u64(usage.rowsRead), rowsWritten: u64(lines.length), documents: [DOCUMENT] };
  },
};
