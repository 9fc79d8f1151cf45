/*
 * The chargeback transform, free of the component bindings: a line-by-line
 * mirror of adapters/chargeback-csv/src/rating.rs, so that both adapters
 * write the same bytes for the same usage and config. What keeps them
 * byte-identical:
 * - rows are keyed by (usage day, group, subscription, meter) as strings,
 *   and each key's quantity is summed in the order the rows arrive
 *   (`0.0 + q1 + q2 …`, as Rust's `or_default() += q`);
 * - rows are sorted by that key, strings byte by byte as Rust compares them;
 * - numbers are printed as Rust's `{:.6}` (tk_fixed6), and the refusal of a
 *   negative rate as Rust's `{}` (tk_rust_display);
 * - the config is read as serde_json reads it, refused in its words.
 */
#ifndef CHARGEBACK_RATING_H
#define CHARGEBACK_RATING_H

#include "tally_kit.h"

/* The installation's `[config]` table. */
typedef struct {
  tk_str currency;
  tk_str group_by_tag;
  tk_rates rates;
  /* Also write each subscription's rows as a document of its own,
   * belonging to that subscription (`append-for`). */
  bool per_subscription;
  tk_json json; /* owns the strings above */
} config;

/* Parses and checks a config (JSON); on failure `error` holds the reason
 * chargeback-csv gives ("config: …"). Free with config_free either way. */
bool config_parse(config *config, const char *text, size_t len, tk_buf *error);
void config_free(config *config);

/* The columns of a usage batch that chargeback reads. */
typedef struct {
  const tk_str *strings;
  size_t strings_len;
  /* Tag sets: `tag_set_len[i]` pairs of (key, value) string indexes from
   * `tag_pairs[i]`. */
  const uint32_t *const *tag_pairs;
  const size_t *tag_set_len;
  size_t tag_sets_len;
  const uint32_t *subscription_id;
  const uint32_t *meter_id;
  const uint32_t *tags;
  const int64_t *usage_start;
  const double *quantity;
  size_t rows;
} columns;

/* One output row: interned names and the summed quantity. */
typedef struct {
  int64_t day;
  uint32_t group, subscription, meter;
  double quantity;
} chargeback_row;

/* Quantities summed per usage day, group, subscription and meter. */
typedef struct {
  tk_interner names;
  chargeback_row *rows;
  size_t rows_len, rows_cap;
  uint32_t *slots; /* open addressing over rows: index + 1, 0 for empty */
  size_t slot_mask;
  uint64_t rows_read;
} chargeback;

/* The meter catalog: lower-case id → name and unit. */
typedef struct {
  tk_interner ids;
  tk_str *names;
  tk_str *units;
} catalog;

void catalog_add(catalog *catalog, tk_str id, tk_str name, tk_str unit);
void catalog_free(catalog *catalog);

void chargeback_add(chargeback *chargeback, const columns *batch, tk_str group_by_tag);

/* Receives the document's pieces, of about 64 KiB each; `subscription` is
 * NULL for chargeback.csv. Returns false to stop (the error is the
 * receiver's to keep). */
typedef bool (*piece_writer)(void *context, const tk_str *subscription, tk_str piece);

/* chargeback.csv, rows ordered by day, group, subscription and meter; the
 * meters without a rate (exported at 0) are added to `unrated`, sorted, once
 * each. */
bool chargeback_render(chargeback *chargeback, const config *config, const catalog *catalog,
                       piece_writer write, void *context, tk_interner *unrated);
/* Each subscription's own CSV: the header, then the rows of chargeback.csv
 * that are the subscription's, in the same order; subscriptions in the order
 * of their ids (byte by byte). */
bool chargeback_render_per_subscription(chargeback *chargeback, const config *config,
                                        const catalog *catalog, piece_writer write,
                                        void *context);
void chargeback_free(chargeback *chargeback);

#endif
