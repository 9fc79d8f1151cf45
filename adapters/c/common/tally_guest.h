/*
 * The component side shared by tally's C adapters: the generated bindings
 * (billing_adapter.h, from `tally adapter bindings --lang c`) seen through
 * the kit's strings, and Rust's `{:?}` of the contract's errors so that a C
 * adapter reports them as the Rust adapters do.
 *
 * Ownership, as wit-bindgen's C bindings have it: what an import returns
 * belongs to the caller (free it with the generated *_free); what an export
 * returns is freed by the generated post-return code, so it must be
 * allocated with malloc (guest_string copies); an export's arguments belong
 * to the export.
 */
#ifndef TALLY_GUEST_H
#define TALLY_GUEST_H

#include "billing_adapter.h"
#include "tally_kit.h"

/* A binding's string, borrowed. */
tk_str guest_str(const billing_adapter_string_t *s);
/* A copy for the host to take (an export's result). */
billing_adapter_string_t guest_string(tk_str text);
/* A binding's string borrowing `text` (an import's argument). */
billing_adapter_string_t guest_borrow(tk_str text);

void guest_log(tally_billing_log_level_t level, tk_str message);

/* Rust's `{:?}` of a query error: `QueryError::InvalidWindow("…")`. */
void guest_debug_query_error(tk_buf *buf, const tally_billing_usage_query_error_t *error);
/* Rust's `{:?}` of an output error: `OutputError::LimitReached(1048576)`. */
void guest_debug_output_error(tk_buf *buf, const tally_billing_output_output_error_t *error);

/* Appends to a document (to one that belongs to `subscription` when it is
 * not NULL); on refusal `error` gets the output error's `{:?}`. */
bool guest_append(const tk_str *subscription, tk_str document, const char *content_type,
                  tk_str bytes, tk_buf *error);

/* Calls `each` for every meter of the catalog. */
void guest_meters(void (*each)(void *context, tk_str id, tk_str name, tk_str unit),
                  void *context);

#endif
