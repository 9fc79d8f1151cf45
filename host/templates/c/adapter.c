/*
 * {{name}}: a tally billing adapter in C. It sums the usage of each meter
 * over the export window, prices it with the rate card of its config and
 * writes `summary.csv`.
 *
 * The contract is wit/billing-adapter.wit: start there. build.sh generates
 * its C bindings into gen/ (`tally adapter bindings --lang c`): every import
 * is a function named after its interface (tally_billing_usage_query, …),
 * every export one to write here (exports_tally_billing_adapter_…).
 *
 * Who frees what: an import's results are yours (free them with the
 * generated *_free functions); an export's arguments are yours too; what an
 * export returns is freed by the generated code after the host copied it,
 * so it must come from malloc: copy strings with billing_adapter_string_dup_n,
 * never billing_adapter_string_set on a buffer you still use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing_adapter.h"
#include "config.h"

static const char DOCUMENT[] = "summary.csv";

/* A string for the host to take (it is freed after the call returns). */
static billing_adapter_string_t owned(const char *text, size_t len) {
  billing_adapter_string_t s;
  billing_adapter_string_dup_n(&s, text, len);
  return s;
}

void exports_tally_billing_adapter_describe(exports_tally_billing_adapter_description_t *ret) {
  ret->name = owned("{{name}}", strlen("{{name}}"));
  ret->version = owned("0.1.0", 5);
  ret->produces.len = 1;
  ret->produces.ptr = malloc(sizeof *ret->produces.ptr);
  ret->produces.ptr[0] = owned(DOCUMENT, strlen(DOCUMENT));
}

bool exports_tally_billing_adapter_validate_config(billing_adapter_string_t *text,
                                                   billing_adapter_string_t *err) {
  config config;
  char error[512];
  bool ok = config_parse(&config, (const char *)text->ptr, text->len, error, sizeof error);
  if (!ok) *err = owned(error, strlen(error));
  config_free(&config);
  billing_adapter_string_free(text);
  return ok;
}

/* The total quantity of one meter. */
typedef struct {
  char *id; /* as the catalog spells it */
  size_t id_len;
  double quantity;
} meter_total;

typedef struct {
  meter_total *items;
  size_t len;
} totals;

static void add(totals *totals, const billing_adapter_string_t *meter, double quantity) {
  for (size_t i = 0; i < totals->len; i++) {
    meter_total *t = &totals->items[i];
    if (t->id_len == meter->len && memcmp(t->id, meter->ptr, meter->len) == 0) {
      t->quantity += quantity;
      return;
    }
  }
  totals->items = realloc(totals->items, (totals->len + 1) * sizeof *totals->items);
  char *id = malloc(meter->len + 1);
  memcpy(id, meter->ptr, meter->len);
  id[meter->len] = 0;
  totals->items[totals->len++] = (meter_total){id, meter->len, quantity};
}

static int by_id(const void *a, const void *b) {
  return strcmp(((const meter_total *)a)->id, ((const meter_total *)b)->id);
}

/* A CSV field, quoted when it holds a comma, a quote or a line break. */
static void csv_field(FILE *out, const billing_adapter_string_t *s) {
  bool quote = memchr(s->ptr, ',', s->len) || memchr(s->ptr, '"', s->len) ||
               memchr(s->ptr, '\n', s->len) || memchr(s->ptr, '\r', s->len);
  if (!quote) {
    fwrite(s->ptr, 1, s->len, out);
    return;
  }
  fputc('"', out);
  for (size_t i = 0; i < s->len; i++) {
    if (s->ptr[i] == '"') fputc('"', out);
    fputc(s->ptr[i], out);
  }
  fputc('"', out);
}

static void fail(exports_tally_billing_adapter_export_error_t *err, uint8_t tag,
                 const char *message) {
  err->tag = tag;
  /* All three cases hold a string, at the same place. */
  err->val.permanent = owned(message, strlen(message));
}

bool exports_tally_billing_adapter_export(exports_tally_billing_adapter_export_request_t *request,
                                          billing_adapter_string_t *text,
                                          exports_tally_billing_adapter_summary_t *ret,
                                          exports_tally_billing_adapter_export_error_t *err) {
  config config;
  char error[512];
  totals totals = {NULL, 0};
  uint64_t rows_read = 0;
  bool ok = config_parse(&config, (const char *)text->ptr, text->len, error, sizeof error);
  if (!ok) {
    fail(err, EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_INVALID_CONFIG, error);
    goto done;
  }

  tally_billing_usage_own_cursor_t cursor;
  tally_billing_usage_query_error_t refused;
  if (!tally_billing_usage_query(&request->window, request->granularity, NULL, &cursor, &refused)) {
    billing_adapter_string_t *why = &refused.val.invalid_window; /* every case is a string */
    snprintf(error, sizeof error, "query refused: %.*s", (int)why->len, (const char *)why->ptr);
    tally_billing_usage_query_error_free(&refused);
    fail(err, EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_TRANSIENT, error);
    ok = false;
    goto done;
  }
  /* Usage arrives in column batches; strings are indexes into batch.strings. */
  tally_billing_usage_usage_batch_t batch;
  while (tally_billing_usage_method_cursor_next(tally_billing_usage_borrow_cursor(cursor), &batch)) {
    for (size_t row = 0; row < batch.quantity.len; row++)
      add(&totals, &batch.strings.ptr[batch.meter_id.ptr[row]], batch.quantity.ptr[row]);
    rows_read += batch.quantity.len;
    tally_billing_usage_usage_batch_free(&batch);
  }
  tally_billing_usage_cursor_drop_own(cursor);

  tally_billing_usage_list_meter_t catalog;
  tally_billing_usage_meters(&catalog);
  qsort(totals.items, totals.len, sizeof *totals.items, by_id);
  char *csv = NULL;
  size_t csv_len = 0;
  FILE *out = open_memstream(&csv, &csv_len);
  fputs("meter_id,meter_name,unit,quantity,rate,cost,currency\n", out);
  for (size_t i = 0; i < totals.len; i++) {
    const meter_total *t = &totals.items[i];
    billing_adapter_string_t none = {NULL, 0}, *name = &none, *unit = &none;
    for (size_t m = 0; m < catalog.len; m++) {
      const billing_adapter_string_t *id = &catalog.ptr[m].id;
      if (id->len == t->id_len && memcmp(id->ptr, t->id, t->id_len) == 0) {
        name = &catalog.ptr[m].name;
        unit = &catalog.ptr[m].unit;
      }
    }
    double price = config_rate(&config, t->id, t->id_len);
    fprintf(out, "%s,", t->id);
    csv_field(out, name);
    fputc(',', out);
    csv_field(out, unit);
    fprintf(out, ",%.6f,%g,%.6f,%s\n", t->quantity, price, t->quantity * price, config.currency);
  }
  fclose(out);
  tally_billing_usage_list_meter_free(&catalog);

  billing_adapter_string_t document = {(uint8_t *)DOCUMENT, strlen(DOCUMENT)};
  billing_adapter_string_t content_type = {(uint8_t *)"text/csv", 8};
  billing_adapter_list_u8_t bytes = {(uint8_t *)csv, csv_len};
  tally_billing_output_output_error_t not_written;
  ok = tally_billing_output_append(&document, &content_type, &bytes, &not_written);
  free(csv);
  if (!ok) {
    snprintf(error, sizeof error, "writing %s was refused (output error %d)", DOCUMENT,
             not_written.tag);
    tally_billing_output_output_error_free(&not_written);
    fail(err, EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_PERMANENT, error);
    goto done;
  }
  snprintf(error, sizeof error, "%llu usage rows summed into %zu meters",
           (unsigned long long)rows_read, totals.len);
  billing_adapter_string_t message = {(uint8_t *)error, strlen(error)};
  tally_billing_log_write(TALLY_BILLING_LOG_LEVEL_INFO, &message);

  ret->rows_read = rows_read;
  ret->rows_written = totals.len;
  ret->documents.len = 1;
  ret->documents.ptr = malloc(sizeof *ret->documents.ptr);
  ret->documents.ptr[0] = owned(DOCUMENT, strlen(DOCUMENT));
done:
  for (size_t i = 0; i < totals.len; i++) free(totals.items[i].id);
  free(totals.items);
  config_free(&config);
  billing_adapter_string_free(text);
  exports_tally_billing_adapter_export_request_free(request);
  return ok;
}
