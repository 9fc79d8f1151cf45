/*
 * Chargeback CSV for Power BI, in C: the `chargeback-csv` adapter's twin,
 * with the same config and the same documents, byte for byte.
 *
 * Config (the installation's `[config]` table, as for `chargeback-csv`):
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
 *
 * Built by adapters/c/build.sh into target/adapters/chargeback-c.wasm; the
 * transform is in rating.c.
 */
#include <stdlib.h>

#include "rating.h"
#include "tally_guest.h"

static const char DOCUMENT[] = "chargeback.csv";
/* The start of each subscription's document name. */
static const char PER_SUBSCRIPTION[] = "chargeback-";

void exports_tally_billing_adapter_describe(exports_tally_billing_adapter_description_t *ret) {
  ret->name = guest_string(tk_cstr("chargeback-c"));
  ret->version = guest_string(tk_cstr("0.1.0"));
  ret->produces.len = 2;
  ret->produces.ptr = tk_alloc(2 * sizeof *ret->produces.ptr);
  ret->produces.ptr[0] = guest_string(tk_cstr(DOCUMENT));
  ret->produces.ptr[1] = guest_string(tk_cstr("chargeback-{subscription}.csv"));
}

bool exports_tally_billing_adapter_validate_config(billing_adapter_string_t *text,
                                                   billing_adapter_string_t *err) {
  config config;
  tk_buf error = {0};
  bool ok = config_parse(&config, (const char *)text->ptr, text->len, &error);
  if (!ok) *err = guest_string(tk_buf_view(&error));
  config_free(&config);
  tk_buf_free(&error);
  billing_adapter_string_free(text);
  return ok;
}

/* The documents written, in order, for the summary. */
typedef struct {
  billing_adapter_string_t *names;
  size_t len, cap;
  tk_buf error; /* the refused write's `{:?}` */
} written;

static void note_document(written *w, tk_str name) {
  if (w->len && tk_str_eq(guest_str(&w->names[w->len - 1]), name)) return;
  if (w->len == w->cap) {
    w->cap = w->cap ? w->cap * 2 : 8;
    w->names = tk_realloc(w->names, w->cap * sizeof *w->names);
  }
  w->names[w->len++] = guest_string(name);
}

static bool write_piece(void *context, const tk_str *subscription, tk_str piece) {
  written *w = context;
  tk_buf name = {0};
  if (subscription)
    tk_document_name(&name, PER_SUBSCRIPTION, *subscription, ".csv");
  else
    tk_buf_puts(&name, DOCUMENT);
  bool ok = guest_append(subscription, tk_buf_view(&name), "text/csv", piece, &w->error);
  if (ok) note_document(w, tk_buf_view(&name));
  tk_buf_free(&name);
  return ok;
}

static void add_meter(void *context, tk_str id, tk_str name, tk_str unit) {
  catalog_add(context, id, name, unit);
}

/* Reads every batch of the window into `chargeback`; false with the query's
 * refusal in `error`. */
static bool read_usage(const exports_tally_billing_adapter_export_request_t *request,
                       const config *config, chargeback *cb, tk_buf *error) {
  tally_billing_usage_window_t window = request->window;
  tally_billing_usage_own_cursor_t cursor;
  tally_billing_usage_query_error_t refused;
  if (!tally_billing_usage_query(&window, request->granularity, NULL, &cursor, &refused)) {
    guest_debug_query_error(error, &refused);
    tally_billing_usage_query_error_free(&refused);
    return false;
  }
  tally_billing_usage_borrow_cursor_t borrowed = tally_billing_usage_borrow_cursor(cursor);
  tally_billing_usage_usage_batch_t batch;
  while (tally_billing_usage_method_cursor_next(borrowed, &batch)) {
    tk_str *strings = tk_alloc(batch.strings.len * sizeof *strings);
    for (size_t i = 0; i < batch.strings.len; i++) strings[i] = guest_str(&batch.strings.ptr[i]);
    size_t sets = batch.tag_sets.len;
    const uint32_t **pairs = tk_alloc(sets * sizeof *pairs);
    size_t *set_len = tk_alloc(sets * sizeof *set_len);
    for (size_t i = 0; i < sets; i++) {
      /* A tuple<u32, u32> is two u32s in a row. */
      pairs[i] = (const uint32_t *)batch.tag_sets.ptr[i].ptr;
      set_len[i] = batch.tag_sets.ptr[i].len;
    }
    columns columns = {
        .strings = strings,
        .strings_len = batch.strings.len,
        .tag_pairs = pairs,
        .tag_set_len = set_len,
        .tag_sets_len = sets,
        .subscription_id = batch.subscription_id.ptr,
        .meter_id = batch.meter_id.ptr,
        .tags = batch.tags.ptr,
        .usage_start = batch.usage_start.ptr,
        .quantity = batch.quantity.ptr,
        .rows = batch.quantity.len,
    };
    chargeback_add(cb, &columns, config->group_by_tag);
    free(set_len);
    free(pairs);
    free(strings);
    tally_billing_usage_usage_batch_free(&batch);
  }
  tally_billing_usage_cursor_drop_own(cursor);
  return true;
}

static bool export_window(const exports_tally_billing_adapter_export_request_t *request,
                          const config *config, exports_tally_billing_adapter_summary_t *ret,
                          exports_tally_billing_adapter_export_error_t *err) {
  chargeback cb = {0};
  catalog catalog = {0};
  tk_interner unrated = {0};
  written written = {0};
  tk_buf error = {0};
  bool ok = read_usage(request, config, &cb, &error);
  if (!ok) {
    err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_TRANSIENT;
    err->val.transient = guest_string(tk_buf_view(&error));
    goto done;
  }
  guest_meters(add_meter, &catalog);
  ok = chargeback_render(&cb, config, &catalog, write_piece, &written, &unrated);
  if (ok && config->per_subscription)
    ok = chargeback_render_per_subscription(&cb, config, &catalog, write_piece, &written);
  if (!ok) {
    err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_PERMANENT;
    err->val.permanent = guest_string(tk_buf_view(&written.error));
    for (size_t i = 0; i < written.len; i++) billing_adapter_string_free(&written.names[i]);
    free(written.names);
    goto done;
  }
  tk_sort_strs(unrated.names, unrated.count);
  for (uint32_t i = 0; i < unrated.count; i++) {
    tk_buf_clear(&error);
    tk_buf_puts(&error, "meter ");
    tk_buf_str(&error, unrated.names[i]);
    tk_buf_puts(&error, " has no rate in the rate card; exported at 0");
    guest_log(TALLY_BILLING_LOG_LEVEL_WARN, tk_buf_view(&error));
  }
  tk_buf_clear(&error);
  tk_buf_printf(&error, "%llu usage rows rated into %zu chargeback rows",
                (unsigned long long)cb.rows_read, cb.rows_len);
  guest_log(TALLY_BILLING_LOG_LEVEL_INFO, tk_buf_view(&error));
  ret->rows_read = cb.rows_read;
  ret->rows_written = cb.rows_len;
  ret->documents.ptr = written.names;
  ret->documents.len = written.len;
done:
  tk_buf_free(&written.error);
  tk_buf_free(&error);
  tk_interner_free(&unrated);
  catalog_free(&catalog);
  chargeback_free(&cb);
  return ok;
}

bool exports_tally_billing_adapter_export(exports_tally_billing_adapter_export_request_t *request,
                                          billing_adapter_string_t *text,
                                          exports_tally_billing_adapter_summary_t *ret,
                                          exports_tally_billing_adapter_export_error_t *err) {
  config config;
  tk_buf error = {0};
  bool ok = config_parse(&config, (const char *)text->ptr, text->len, &error);
  if (!ok) {
    err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_INVALID_CONFIG;
    err->val.invalid_config = guest_string(tk_buf_view(&error));
  } else {
    ok = export_window(request, &config, ret, err);
  }
  config_free(&config);
  tk_buf_free(&error);
  billing_adapter_string_free(text);
  exports_tally_billing_adapter_export_request_free(request);
  return ok;
}
