/*
 * location-costs, in C: what each location (region, datacenter) costs, per
 * meter, over the export window, priced by a rate card. See README.md.
 *
 * Writes `location-costs.csv` (a line per location and meter) and
 * `location-totals.csv` (a line per location with its share of the total).
 * The report itself is in report.c; this file is the component around it.
 */
#include <stdlib.h>

#include "report.h"
#include "tally_guest.h"

static const char COSTS[] = "location-costs.csv";
static const char TOTALS[] = "location-totals.csv";

void exports_tally_billing_adapter_describe(exports_tally_billing_adapter_description_t *ret) {
  ret->name = guest_string(tk_cstr("location-costs"));
  ret->version = guest_string(tk_cstr("0.1.0"));
  ret->produces.len = 2;
  ret->produces.ptr = tk_alloc(2 * sizeof *ret->produces.ptr);
  ret->produces.ptr[0] = guest_string(tk_cstr(COSTS));
  ret->produces.ptr[1] = guest_string(tk_cstr(TOTALS));
}

bool exports_tally_billing_adapter_validate_config(billing_adapter_string_t *text,
                                                   billing_adapter_string_t *err) {
  report_config config;
  tk_buf error = {0};
  bool ok = report_config_parse(&config, (const char *)text->ptr, text->len, &error);
  if (!ok) *err = guest_string(tk_buf_view(&error));
  report_config_free(&config);
  tk_buf_free(&error);
  billing_adapter_string_free(text);
  return ok;
}

/* Reads every batch of the window into `report`; false with the query's
 * refusal in `error`. */
static bool read_usage(const exports_tally_billing_adapter_export_request_t *request,
                       report *report, tk_buf *error) {
  tally_billing_usage_window_t window = request->window;
  tally_billing_usage_own_cursor_t cursor;
  tally_billing_usage_query_error_t refused;
  if (!tally_billing_usage_query(&window, request->granularity, NULL, &cursor, &refused)) {
    tk_buf_puts(error, "the host refused the query: ");
    guest_debug_query_error(error, &refused);
    tally_billing_usage_query_error_free(&refused);
    return false;
  }
  tally_billing_usage_borrow_cursor_t borrowed = tally_billing_usage_borrow_cursor(cursor);
  tally_billing_usage_usage_batch_t batch;
  while (tally_billing_usage_method_cursor_next(borrowed, &batch)) {
    /* Ids of the batch's strings as locations and as meters, made on first use. */
    size_t n = batch.strings.len;
    uint32_t *ids = tk_alloc(2 * n * sizeof *ids);
    for (size_t i = 0; i < 2 * n; i++) ids[i] = UINT32_MAX;
    for (size_t row = 0; row < batch.quantity.len; row++) {
      uint32_t l = batch.location.ptr[row], m = batch.meter_id.ptr[row];
      if (ids[l] == UINT32_MAX) ids[l] = report_location(report, guest_str(&batch.strings.ptr[l]));
      if (ids[n + m] == UINT32_MAX)
        ids[n + m] = report_meter(report, guest_str(&batch.strings.ptr[m]));
      report_add(report, ids[l], ids[n + m], batch.quantity.ptr[row]);
    }
    free(ids);
    tally_billing_usage_usage_batch_free(&batch);
  }
  tally_billing_usage_cursor_drop_own(cursor);
  return true;
}

/* The catalog, for each meter's name and unit. */
typedef struct {
  tally_billing_usage_list_meter_t meters;
} meter_catalog;

static meter_info lookup_meter(void *context, tk_str meter) {
  const meter_catalog *catalog = context;
  for (size_t i = 0; i < catalog->meters.len; i++) {
    const tally_billing_usage_meter_t *m = &catalog->meters.ptr[i];
    if (tk_str_eq_ignore_ascii_case(guest_str(&m->id), meter))
      return (meter_info){guest_str(&m->name), guest_str(&m->unit)};
  }
  return (meter_info){{"", 0}, {"", 0}};
}

static bool export_window(const exports_tally_billing_adapter_export_request_t *request,
                          const report_config *config,
                          exports_tally_billing_adapter_summary_t *ret,
                          exports_tally_billing_adapter_export_error_t *err) {
  report report = {0};
  tk_buf costs = {0}, totals = {0}, message = {0};
  tk_interner unrated = {0};
  meter_catalog catalog;
  tally_billing_usage_meters(&catalog.meters);
  bool ok = read_usage(request, &report, &message);
  if (!ok) {
    err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_TRANSIENT;
    err->val.transient = guest_string(tk_buf_view(&message));
    goto done;
  }
  double total = report_render(&report, config, lookup_meter, &catalog, &costs, &totals, &unrated);
  tk_sort_strs(unrated.names, unrated.count);
  for (uint32_t i = 0; i < unrated.count; i++) {
    tk_buf_clear(&message);
    tk_buf_puts(&message, "meter ");
    tk_buf_str(&message, unrated.names[i]);
    if (config->unrated == UNRATED_FAIL) {
      tk_buf_puts(&message, " has usage but no rate in [config.rates]: add its rate, or set "
                            "unrated = \"zero\" to price it at 0");
      err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_PERMANENT;
      err->val.permanent = guest_string(tk_buf_view(&message));
      ok = false;
      goto done;
    }
    tk_buf_puts(&message, " has no rate in the rate card; priced at 0");
    guest_log(TALLY_BILLING_LOG_LEVEL_WARN, tk_buf_view(&message));
  }
  tk_buf_clear(&message);
  if (!guest_append(NULL, tk_cstr(COSTS), "text/csv", tk_buf_view(&costs), &message) ||
      !guest_append(NULL, tk_cstr(TOTALS), "text/csv", tk_buf_view(&totals), &message)) {
    err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_PERMANENT;
    err->val.permanent = guest_string(tk_buf_view(&message));
    ok = false;
    goto done;
  }
  tk_buf_clear(&message);
  tk_buf_printf(&message, "%llu usage rows priced into %zu location and meter lines; total ",
                (unsigned long long)report.rows_read, report.lines_len);
  tk_rust_display(&message, total);
  tk_buf_char(&message, ' ');
  tk_buf_str(&message, config->currency);
  guest_log(TALLY_BILLING_LOG_LEVEL_INFO, tk_buf_view(&message));
  ret->rows_read = report.rows_read;
  ret->rows_written = report.lines_len;
  ret->documents.len = 2;
  ret->documents.ptr = tk_alloc(2 * sizeof *ret->documents.ptr);
  ret->documents.ptr[0] = guest_string(tk_cstr(COSTS));
  ret->documents.ptr[1] = guest_string(tk_cstr(TOTALS));
done:
  tally_billing_usage_list_meter_free(&catalog.meters);
  tk_interner_free(&unrated);
  tk_buf_free(&message);
  tk_buf_free(&totals);
  tk_buf_free(&costs);
  report_free(&report);
  return ok;
}

bool exports_tally_billing_adapter_export(exports_tally_billing_adapter_export_request_t *request,
                                          billing_adapter_string_t *text,
                                          exports_tally_billing_adapter_summary_t *ret,
                                          exports_tally_billing_adapter_export_error_t *err) {
  report_config config;
  tk_buf error = {0};
  bool ok = report_config_parse(&config, (const char *)text->ptr, text->len, &error);
  if (!ok) {
    err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_INVALID_CONFIG;
    err->val.invalid_config = guest_string(tk_buf_view(&error));
  } else {
    ok = export_window(request, &config, ret, err);
  }
  report_config_free(&config);
  tk_buf_free(&error);
  billing_adapter_string_free(text);
  exports_tally_billing_adapter_export_request_free(request);
  return ok;
}
