// A C++ adapter over the C bindings: the quantity of each meter over the
// window, as summary.csv. It checks the guide's C++ recipe
// (docs/writing-adapters.md, "C++ and Zig"): tests/c_adapters.rs builds it
// with those very commands and runs it.
#include <cstdlib>
#include <map>
#include <string>

#include "billing_adapter.h"

namespace {

// A string for the host to take: freed by the generated post-return code.
billing_adapter_string_t owned(const std::string &text) {
  billing_adapter_string_t s;
  billing_adapter_string_dup_n(&s, text.data(), text.size());
  return s;
}

billing_adapter_list_string_t owned_list(const std::string &text) {
  auto *one = static_cast<billing_adapter_string_t *>(std::malloc(sizeof(billing_adapter_string_t)));
  one[0] = owned(text);
  return {one, 1};
}

const std::string DOCUMENT = "summary.csv";

}  // namespace

extern "C" void exports_tally_billing_adapter_describe(
    exports_tally_billing_adapter_description_t *ret) {
  ret->name = owned("cpp-summary");
  ret->version = owned("0.1.0");
  ret->produces = owned_list(DOCUMENT);
}

extern "C" bool exports_tally_billing_adapter_validate_config(billing_adapter_string_t *config,
                                                              billing_adapter_string_t *) {
  billing_adapter_string_free(config);
  return true;
}

extern "C" bool exports_tally_billing_adapter_export(
    exports_tally_billing_adapter_export_request_t *request, billing_adapter_string_t *config,
    exports_tally_billing_adapter_summary_t *ret,
    exports_tally_billing_adapter_export_error_t *err) {
  billing_adapter_string_free(config);
  tally_billing_usage_own_cursor_t cursor;
  tally_billing_usage_query_error_t refused;
  bool queried = tally_billing_usage_query(&request->window, request->granularity, nullptr,
                                           &cursor, &refused);
  exports_tally_billing_adapter_export_request_free(request);
  if (!queried) {
    tally_billing_usage_query_error_free(&refused);
    err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_TRANSIENT;
    err->val.transient = owned("the host refused the query");
    return false;
  }
  std::map<std::string, double> totals;
  uint64_t rows = 0;
  tally_billing_usage_usage_batch_t batch;
  while (tally_billing_usage_method_cursor_next(tally_billing_usage_borrow_cursor(cursor), &batch)) {
    for (size_t i = 0; i < batch.quantity.len; i++) {
      const auto &meter = batch.strings.ptr[batch.meter_id.ptr[i]];
      totals[std::string(reinterpret_cast<const char *>(meter.ptr), meter.len)] +=
          batch.quantity.ptr[i];
    }
    rows += batch.quantity.len;
    tally_billing_usage_usage_batch_free(&batch);
  }
  tally_billing_usage_cursor_drop_own(cursor);

  std::string csv = "meter_id,quantity\n";
  for (const auto &[meter, quantity] : totals) csv += meter + "," + std::to_string(quantity) + "\n";
  billing_adapter_string_t name = {(uint8_t *)DOCUMENT.data(), DOCUMENT.size()};
  billing_adapter_string_t type = {(uint8_t *)"text/csv", 8};
  billing_adapter_list_u8_t bytes = {(uint8_t *)csv.data(), csv.size()};
  tally_billing_output_output_error_t refused_write;
  if (!tally_billing_output_append(&name, &type, &bytes, &refused_write)) {
    tally_billing_output_output_error_free(&refused_write);
    err->tag = EXPORTS_TALLY_BILLING_ADAPTER_EXPORT_ERROR_PERMANENT;
    err->val.permanent = owned("the host refused " + DOCUMENT);
    return false;
  }
  ret->rows_read = rows;
  ret->rows_written = totals.size();
  ret->documents = owned_list(DOCUMENT);
  return true;
}
