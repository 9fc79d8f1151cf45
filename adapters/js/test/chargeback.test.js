import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConfigError } from '../lib/config.js';
import { Chargeback, HEADER, parseConfig } from '../chargeback/rating.js';
import { catalogOf } from '../lib/wit.js';

const DAY = 86_400;
const T0 = 1_793_318_400; // 2026-10-30T00:00:00Z

/**
 * A usage-batch as QuickJS hands it over (Arrays, s64 as Number), or as
 * StarlingMonkey does (typed arrays, s64 as BigInt).
 */
function batch(rows, bigint) {
  const strings = [];
  const index = (s) => (strings.includes(s) ? strings.indexOf(s) : strings.push(s) - 1);
  const tagSets = [];
  const tagSetOf = (tags) => {
    const set = Object.entries(tags).map(([k, v]) => [index(k), index(v)]);
    const key = JSON.stringify(set);
    const found = tagSets.findIndex((s) => JSON.stringify(s) === key);
    return found >= 0 ? found : tagSets.push(set) - 1;
  };
  const columns = {
    subscriptionId: rows.map((r) => index(r.sub)),
    meterId: rows.map((r) => index(r.meter)),
    tags: rows.map((r) => tagSetOf(r.tags)),
    usageStart: rows.map((r) => r.start),
    quantity: rows.map((r) => r.quantity),
  };
  return bigint
    ? {
        strings,
        tagSets,
        subscriptionId: Uint32Array.from(columns.subscriptionId),
        meterId: Uint32Array.from(columns.meterId),
        tags: Uint32Array.from(columns.tags),
        usageStart: BigInt64Array.from(columns.usageStart, BigInt),
        quantity: Float64Array.from(columns.quantity),
      }
    : { strings, tagSets, ...columns };
}

// -0.0 as the host passes it on (JSON.stringify would write 0).
const config = parseConfig('{"currency":"EUR","group_by_tag":"cc","rates":{"M1":0.5,"m2":-0.0}}');
const catalog = catalogOf([
  { id: 'M1', name: 'Meter, one', unit: 'Hours', category: 'x' },
  { id: 'M2', name: 'Meter "two"', unit: 'GB', category: 'x' },
]);
/** The whole CSV and the unrated meters of a chargeback. */
function render(chargeback) {
  const pieces = [];
  const unrated = chargeback.render(config, catalog, (piece) => pieces.push(piece));
  return { csv: pieces.join(''), unrated };
}

const rows = [
  { sub: 's1', meter: 'M1', tags: { cc: '\u{1f4b6}' }, start: T0 + 3_600, quantity: 0.015625 },
  { sub: 's1', meter: 'M1', tags: { cc: '\uff41' }, start: T0, quantity: 1 },
  { sub: 's1', meter: 'M2', tags: { env: 'x' }, start: T0 - DAY, quantity: 2 },
  { sub: 's1', meter: 'M3', tags: { cc: 'a,b' }, start: T0, quantity: -0 },
  { sub: 's1', meter: 'M1', tags: { cc: '\u{1f4b6}' }, start: T0 + 7_200, quantity: 1e21 },
];

test('rows sum per day, group, subscription and meter; render as the Rust adapter', () => {
  const chargeback = new Chargeback(config.groupByTag);
  chargeback.add(batch(rows.slice(0, 2)));
  chargeback.add(batch(rows.slice(2)));
  assert.equal(chargeback.rowsRead, 5);
  assert.equal(chargeback.rows, 4);
  const { csv, unrated } = render(chargeback);
  assert.equal(
    csv,
    HEADER +
      '2026-10-29,unallocated,s1,M2,"Meter ""two""",GB,2.000000,-0.000000,-0.000000,EUR\n' +
      '2026-10-30,"a,b",s1,M3,,,0.000000,0.000000,0.000000,EUR\n' +
      // Rust's byte order: U+FF41 before U+1F4B6 (JavaScript's `<` says otherwise).
      '2026-10-30,\uff41,s1,M1,"Meter, one",Hours,1.000000,0.500000,0.500000,EUR\n' +
      '2026-10-30,\u{1f4b6},s1,M1,"Meter, one",Hours,1000000000000000000000.000000,0.500000,500000000000000000000.000000,EUR\n',
  );
  assert.deepEqual(unrated, ['M3']);
});

test('StarlingMonkey column types (typed arrays, BigInt) give the same CSV', () => {
  const csvOf = (bigint) => {
    const chargeback = new Chargeback(config.groupByTag);
    chargeback.add(batch(rows, bigint));
    return render(chargeback).csv;
  };
  assert.equal(csvOf(true), csvOf(false));
});

test('the CSV comes in pieces of about 64 KiB', () => {
  const chargeback = new Chargeback('cc');
  const many = Array.from({ length: 3_000 }, (_, i) => ({ ...rows[1], sub: `subscription-${i}` }));
  chargeback.add(batch(many));
  const pieces = [];
  chargeback.render(config, catalog, (piece) => pieces.push(piece));
  assert.ok(pieces.length > 1 && pieces.every((p) => p.length < 70_000), String(pieces.length));
  assert.equal(pieces.join('').split('\n').length, 3_002);
});

test('an exact tie rounds to even, as Rust does', () => {
  const chargeback = new Chargeback('cc');
  chargeback.add(batch([{ sub: 's', meter: 'M1', tags: {}, start: T0, quantity: 0.015625 }]));
  // 0.015625 × 0.5 = 0.0078125 exactly: Rust prints 0.007812, toFixed(6) 0.007813.
  assert.match(render(chargeback).csv, /,0\.015625,0\.500000,0\.007812,EUR\n$/);
});

test('each subscription gets its rows of the whole CSV, in its order', () => {
  const chargeback = new Chargeback(config.groupByTag);
  const two = rows.map((row, i) => ({ ...row, sub: i % 2 ? 's\u{1f4b6}' : 's\uff41' }));
  chargeback.add(batch(two));
  const whole = render(chargeback).csv.split('\n');
  const documents = [];
  chargeback.renderPerSubscription(config, catalog, (subscription, piece) => {
    const last = documents[documents.length - 1];
    if (last && last[0] === subscription) last[1] += piece;
    else documents.push([subscription, piece]);
  });
  // Rust's order: U+FF41 before U+1F4B6.
  assert.deepEqual(
    documents.map(([subscription]) => subscription),
    ['s\uff41', 's\u{1f4b6}'],
  );
  for (const [subscription, text] of documents) {
    const own = whole.filter((line) => line.includes(`,${subscription},`));
    assert.equal(text, HEADER + own.map((line) => `${line}\n`).join(''));
  }
});

test("configs are refused with the Rust adapter's reasons", () => {
  assert.ok(parseConfig('{"currency":"EUR","group_by_tag":"cc","rates":{}}'));
  assert.equal(parseConfig('{"currency":"EUR","group_by_tag":"cc","rates":{}}').perSubscription, false);
  assert.equal(
    parseConfig('{"currency":"EUR","group_by_tag":"cc","rates":{},"per_subscription":true}').perSubscription,
    true,
  );
  for (const [json, reason] of [
    ['{"currency":"EURO","group_by_tag":"cc","rates":{}}', "currency 'EURO' is not an ISO 4217 code"],
    ['{"currency":"EUR","group_by_tag":" \\t\\u3000","rates":{}}', 'group_by_tag must not be empty'],
    [
      '{"currency":"EUR","group_by_tag":"cc","rates":{"m":-0.5}}',
      "the rate of meter 'm' must be a non-negative number, not -0.5",
    ],
    [
      '{"currency":"EUR","group_by_tag":"cc","rates":{},"tax":0.2}',
      'unknown field `tax`, expected one of `currency`, `group_by_tag`, `rates`, `per_subscription`',
    ],
    [
      '{"currency":"EUR","group_by_tag":"cc","rates":{},"per_subscription":1}',
      'invalid type: integer `1`, expected a boolean',
    ],
    ['{"currency":"EUR","rates":{}}', 'missing field `group_by_tag`'],
    [
      '{"currency":"EUR","group_by_tag":"cc","rates":{"m":"cheap"}}',
      'invalid type: string "cheap", expected f64',
    ],
    ['{"currency":7,"group_by_tag":"cc","rates":{}}', 'invalid type: integer `7`, expected a string'],
    ['{"currency":"EUR","group_by_tag":"cc","rates":[1]}', 'invalid type: sequence, expected a map'],
    ['"EUR"', 'invalid type: string "EUR", expected struct Config'],
    ['{"currency":"EUR","group_by_tag":"cc","rates":{"m":1e400}}', 'number out of range'],
    [
      '{"currency":"EUR","group_by_tag":"cc","rates":{"ab":1,"AB":2}}',
      "the rate card names meter 'AB' twice ('AB' and 'ab'; ids ignore case)",
    ],
  ]) {
    assert.throws(() => parseConfig(json), { name: 'Error', message: `config: ${reason}` }, json);
  }
  assert.throws(
    () => parseConfig('{'),
    (e) => e instanceof ConfigError && e.message.startsWith('config: '),
  );
});
