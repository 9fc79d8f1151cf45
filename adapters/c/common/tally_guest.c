/* The component side shared by tally's C adapters: see tally_guest.h. */
#include "tally_guest.h"

#include <string.h>

tk_str guest_str(const billing_adapter_string_t *s) {
  return (tk_str){(const char *)s->ptr, s->len};
}

billing_adapter_string_t guest_string(tk_str text) {
  billing_adapter_string_t s;
  billing_adapter_string_dup_n(&s, text.ptr, text.len);
  return s;
}

billing_adapter_string_t guest_borrow(tk_str text) {
  return (billing_adapter_string_t){(uint8_t *)text.ptr, text.len};
}

void guest_log(tally_billing_log_level_t level, tk_str message) {
  billing_adapter_string_t s = guest_borrow(message);
  tally_billing_log_write(level, &s);
}

static void debug_case(tk_buf *buf, const char *name, const billing_adapter_string_t *value) {
  tk_buf_puts(buf, name);
  tk_buf_char(buf, '(');
  tk_debug_str(buf, guest_str(value));
  tk_buf_char(buf, ')');
}

void guest_debug_query_error(tk_buf *buf, const tally_billing_usage_query_error_t *e) {
  switch (e->tag) {
  case TALLY_BILLING_USAGE_QUERY_ERROR_INVALID_WINDOW:
    debug_case(buf, "QueryError::InvalidWindow", &e->val.invalid_window);
    break;
  case TALLY_BILLING_USAGE_QUERY_ERROR_OUT_OF_SCOPE:
    debug_case(buf, "QueryError::OutOfScope", &e->val.out_of_scope);
    break;
  default:
    debug_case(buf, "QueryError::Unavailable", &e->val.unavailable);
  }
}

void guest_debug_output_error(tk_buf *buf, const tally_billing_output_output_error_t *e) {
  switch (e->tag) {
  case TALLY_BILLING_OUTPUT_OUTPUT_ERROR_LIMIT_REACHED:
    tk_buf_printf(buf, "OutputError::LimitReached(%llu)", (unsigned long long)e->val.limit_reached);
    break;
  case TALLY_BILLING_OUTPUT_OUTPUT_ERROR_INVALID_NAME:
    debug_case(buf, "OutputError::InvalidName", &e->val.invalid_name);
    break;
  default:
    debug_case(buf, "OutputError::OutOfScope", &e->val.out_of_scope);
  }
}

bool guest_append(const tk_str *subscription, tk_str document, const char *content_type,
                  tk_str bytes, tk_buf *error) {
  billing_adapter_string_t name = guest_borrow(document);
  billing_adapter_string_t type = guest_borrow(tk_cstr(content_type));
  billing_adapter_list_u8_t data = {(uint8_t *)bytes.ptr, bytes.len};
  tally_billing_output_output_error_t refused;
  bool ok;
  if (subscription) {
    billing_adapter_string_t owner = guest_borrow(*subscription);
    ok = tally_billing_output_append_for(&owner, &name, &type, &data, &refused);
  } else {
    ok = tally_billing_output_append(&name, &type, &data, &refused);
  }
  if (!ok) {
    guest_debug_output_error(error, &refused);
    tally_billing_output_output_error_free(&refused);
  }
  return ok;
}

void guest_meters(void (*each)(void *context, tk_str id, tk_str name, tk_str unit),
                  void *context) {
  tally_billing_usage_list_meter_t meters;
  tally_billing_usage_meters(&meters);
  for (size_t i = 0; i < meters.len; i++) {
    const tally_billing_usage_meter_t *m = &meters.ptr[i];
    each(context, guest_str(&m->id), guest_str(&m->name), guest_str(&m->unit));
  }
  tally_billing_usage_list_meter_free(&meters);
}
