import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConfigError } from '../lib/config.js';
import {
  DEFAULT_BATCH_SIZE,
  Usage,
  batches,
  body,
  judge,
  judgeError,
  lineJson,
  parseConfig,
} from '../invoice-lines/invoice.js';
import { catalogOf } from '../lib/wit.js';

const GOOD = { endpoint: 'https://billing.example/v1/lines', currency: 'EUR', rates: { M1: 0.5 } };
const withField = (key, value) => JSON.stringify({ ...GOOD, [key]: value });

test('configs are checked as the billing-webhook adapter checks them', () => {
  const config = parseConfig(JSON.stringify(GOOD));
  assert.equal(config.batchSize, DEFAULT_BATCH_SIZE);
  assert.equal(config.source, 'tally');
  assert.equal(config.rates.get('m1'), 0.5);
  for (const [key, value, complaint] of [
    ['endpoint', 'ftp://billing.example/', 'not an http or https URL'],
    ['endpoint', 'billing.example/v1', 'not an http or https URL'],
    ['endpoint', 'https:///v1', 'no host'],
    ['endpoint', 'https://user:pw@billing.example/', 'credentials'],
    ['endpoint', 'http://billing.example:99999/', 'invalid port'],
    ['endpoint', 'https://billing.example/a b', 'spaces'],
    ['endpoint', 'https://billing.example/#x', 'fragment'],
    ['currency', 'euro', 'ISO 4217'],
    ['source', 'two words', 'source'],
    ['rates', { m: -1 }, 'non-negative'],
    ['rates', { m: 1, M: 2 }, 'two rates'],
    ['batch_size', 0, 'batch_size'],
    ['batch_size', 1.5, 'invalid type: floating point `1.5`, expected usize'],
    ['batch_size', -1, 'invalid value: integer `-1`, expected usize'],
    ['headers', null, 'invalid type: null, expected a map'],
    ['headers', { 'X-Api-Key': 5 }, 'invalid type: integer `5`, expected a string'],
    ['batch_size', 5_001, 'batch_size'],
    ['surprise', 1, 'unknown field'],
    ['headers', { 'Idempotency-Key': 'x' }, 'set by tally'],
    ['headers', { 'X-Api-Key': 's\n' }, 'printable ASCII'],
    ['headers', { 'bad name': 'x' }, 'not a header name'],
  ]) {
    assert.throws(
      () => parseConfig(withField(key, value)),
      (e) => e instanceof ConfigError && e.message.includes(complaint),
      `${key}=${JSON.stringify(value)}`,
    );
  }
  assert.ok(parseConfig(withField('endpoint', 'http://[::1]:8080/x')));
  assert.deepEqual(parseConfig(withField('headers', { 'X-Api-Key': 's3cr3t', Accept: 'x' })).headers, [
    ['Accept', 'x'],
    ['X-Api-Key', 's3cr3t'],
  ]);
});

test('answers are judged: 408, 429 and 5xx transient, other refusals permanent', () => {
  const bytes = (text) => [...Buffer.from(text)];
  assert.deepEqual(judge(201, [], []), { accepted: true });
  const slow = judge(429, [['retry-after', '30']], bytes('slow down'));
  assert.ok(slow.transient && slow.reason.includes('429: slow down (Retry-After: 30)'), slow.reason);
  assert.ok(judge(503, [], []).transient && judge(503, [], []).reason.includes('(empty body)'));
  assert.ok(judge(408, [], []).transient);
  const refused = judge(422, [], bytes('{"error":\n "bad line"}'));
  assert.ok(!refused.transient && refused.reason.includes('422: {"error": "bad line"}'), refused.reason);
  assert.ok(judge(400, [], bytes('x'.repeat(1_000))).reason.length < 300);
  assert.ok(judge(301, [['Location', 'https://x/']], []).reason.includes('set the endpoint to https://x/'));
  assert.ok(judgeError({ tag: 'timeout', val: '10 s' }).transient);
  assert.ok(judgeError({ tag: 'failed', val: 'refused' }).transient);
  const notAllowed = judgeError({ tag: 'not-allowed', val: 'http://x' });
  assert.ok(!notAllowed.transient && notAllowed.reason.includes('allowed_outbound_hosts'));
  assert.ok(!judgeError({ tag: 'limit-reached', val: 10_000n }).transient);
});

test('batches respect count and size, in order', () => {
  const lines = Array.from({ length: 10 }, (_, i) => 'x'.repeat(10 + i));
  assert.deepEqual(batches(lines, 4, 1 << 20), [
    [0, 4],
    [4, 8],
    [8, 10],
  ]);
  assert.deepEqual(batches(lines.slice(1, 4), 10, 30), [
    [0, 2],
    [2, 3],
  ]);
  assert.deepEqual(batches(lines.slice(0, 2), 10, 5), [
    [0, 1],
    [1, 2],
  ]);
  assert.deepEqual(batches(['€€€'], 10, 9), [[0, 1]], 'sizes are UTF-8 bytes');
  assert.deepEqual(batches(['€', '€'], 10, 7), [
    [0, 1],
    [1, 2],
  ]);
  assert.deepEqual(batches([], 10, 100), []);
});

test('lines: per subscription, day and meter, amounts from the rounded quantity', () => {
  const usage = new Usage();
  usage.add({
    strings: ['s2', 's1', 'M1', 'M9'],
    subscriptionId: [0, 1, 1, 1],
    meterId: [2, 2, 3, 2],
    usageStart: [86_400, 86_400, 86_400, 86_400 + 3_600],
    quantity: [1, 0.3333333, 2, 0.6666667],
  });
  const config = parseConfig(JSON.stringify(GOOD));
  const { lines, unrated } = usage.lines(
    config,
    [0, 2 * 86_400],
    catalogOf([{ id: 'm1', name: 'One', unit: 'h' }]),
  );
  assert.deepEqual(unrated, ['M9']);
  assert.deepEqual(
    lines.map((l) => [l.subscriptionId, l.meterId]),
    [
      ['s1', 'M1'],
      ['s1', 'M9'],
      ['s2', 'M1'],
    ],
  );
  const wire = JSON.parse(lineJson(lines[0], 'EUR'));
  assert.deepEqual(wire, {
    id: 'tally/1970-01-01T00:00:00Z..1970-01-03T00:00:00Z/s1/m1/1970-01-02',
    subscription_id: 's1',
    meter_id: 'M1',
    meter_name: 'One',
    unit: 'h',
    period_start: '1970-01-02T00:00:00Z',
    period_end: '1970-01-03T00:00:00Z',
    quantity: '1.000000',
    unit_price: '0.5',
    amount: '0.500000',
    currency: 'EUR',
  });
  const request = JSON.parse(
    body(
      {
        source: 'tally',
        runId: 'r',
        correction: false,
        window: [0, 86_400],
        index: 1,
        count: 1,
        currency: 'EUR',
      },
      [lineJson(lines[0], 'EUR')],
    ),
  );
  assert.equal(request.window.end, '1970-01-02T00:00:00Z');
  assert.equal(request.lines[0].id, wire.id);
});
