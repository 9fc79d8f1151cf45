/*
 * Helpers shared by tally's C adapters, free of the component bindings (so
 * that they also compile natively, for their own checks): growable byte
 * buffers, string interning, CSV fields, calendar dates, SHA-256 and the
 * names of per-subscription documents, Rust's ways of printing an f64, and a
 * strict JSON config reader that refuses what a Rust adapter's
 * `#[serde(deny_unknown_fields)]` struct refuses, in serde_json's words.
 *
 * Strings are (pointer, length) pairs throughout: a JSON string or a WIT
 * string may hold a NUL byte.
 */
#ifndef TALLY_KIT_H
#define TALLY_KIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A borrowed string: `len` bytes at `ptr`, not NUL-terminated. */
typedef struct {
  const char *ptr;
  size_t len;
} tk_str;

/* A growable byte buffer, always NUL-terminated after `len` bytes. */
typedef struct {
  char *data;
  size_t len;
  size_t cap;
} tk_buf;

/* Exits the module through `abort` (a trap the host reports) when memory is
 * exhausted: an adapter cannot go on without it. */
void *tk_alloc(size_t bytes);
void *tk_realloc(void *ptr, size_t bytes);

tk_str tk_cstr(const char *text);
bool tk_str_eq(tk_str a, tk_str b);
/* Rust's `str::cmp`: byte by byte, a prefix first. */
int tk_str_cmp(tk_str a, tk_str b);
/* Sorts strings as Rust does (tk_str_cmp). */
void tk_sort_strs(tk_str *strings, size_t count);
/* Rust's `eq_ignore_ascii_case`. */
bool tk_str_eq_ignore_ascii_case(tk_str a, tk_str b);
/* Rust's `str::trim().is_empty()`: only Unicode White_Space characters. */
bool tk_str_is_blank(tk_str text);

void tk_buf_reserve(tk_buf *buf, size_t more);
void tk_buf_put(tk_buf *buf, const char *bytes, size_t len);
void tk_buf_puts(tk_buf *buf, const char *text);
void tk_buf_str(tk_buf *buf, tk_str text);
void tk_buf_char(tk_buf *buf, char c);
void tk_buf_printf(tk_buf *buf, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
tk_str tk_buf_view(const tk_buf *buf);
void tk_buf_clear(tk_buf *buf);
void tk_buf_free(tk_buf *buf);

/* A CSV field, quoted (quotes doubled) when it holds `,`, `"`, CR or LF. */
void tk_csv_field(tk_buf *buf, tk_str value);
/* Floor division, as Rust's `i64::div_euclid` for a positive divisor. */
int64_t tk_div_floor(int64_t a, int64_t b);
/* `YYYY-MM-DD` of a day number since 1970-01-01 (Howard Hinnant's
 * civil-from-days, as the Rust adapters' kit). */
void tk_iso_date(tk_buf *buf, int64_t days);

void tk_sha256(const void *bytes, size_t len, uint8_t digest[32]);
/* `{prefix}{subscription}{suffix}` when the id is 1 or more of
 * `A-Z a-z 0-9 . _ -` and the name fits in 128 bytes; otherwise the id is
 * replaced by the first 16 hex digits of its SHA-256 (as
 * `tally_adapter_kit::document_name`). */
void tk_document_name(tk_buf *buf, const char *prefix, tk_str subscription,
                      const char *suffix);

/* Rust's `{}` of an f64: the shortest digits that read back as `x` (of two
 * as near, the greater), positional, never an exponent ("0.0000001",
 * "100000000000000000000", "-0", "NaN", "inf"). */
void tk_rust_display(tk_buf *buf, double x);
/* serde_json's float in its error messages (`floating point `…``): the same
 * shortest digits, positional from 1e-5 to below 1e16 with at least one
 * decimal ("1.0"), else with an exponent ("1e+20", "1.5e-7"). */
void tk_serde_float(tk_buf *buf, double x);
/* Rust's `{:.6}`: the exact value rounded half to even to 6 decimals. */
void tk_fixed6(tk_buf *buf, double x);
/* Rust's `{:?}` of a string (quotes, escapes of `"` `\` and controls). */
void tk_debug_str(tk_buf *buf, tk_str text);

/* Interned strings: each distinct string gets an id, 0, 1, 2… in order of
 * first use; `names[id]` is its own copy. */
typedef struct {
  tk_str *names;
  uint32_t count;
  uint32_t cap;
  uint32_t *slots; /* open addressing: id + 1, 0 for empty */
  uint32_t slot_mask;
} tk_interner;

uint32_t tk_intern(tk_interner *interner, tk_str name);
/* The id of `name`, or UINT32_MAX. */
uint32_t tk_interned(const tk_interner *interner, tk_str name);
void tk_interner_free(tk_interner *interner);

/* --- Configs ------------------------------------------------------------ */

/* A JSON text read as serde_json reads it, value by value, so that the
 * first thing wrong is the thing reported, in serde_json's words with its
 * position ("… at line 1 column 42"). After an error every call fails. */
typedef struct {
  const char *text;
  size_t len;
  size_t pos;
  tk_buf scratch; /* the string being decoded */
  char **owned;   /* decoded strings, freed by tk_json_free */
  size_t owned_count;
  size_t owned_cap;
  tk_buf error;   /* empty until something is wrong */
} tk_json;

void tk_json_init(tk_json *json, const char *text, size_t len);
void tk_json_free(tk_json *json);
bool tk_json_failed(const tk_json *json);
/* Sets the error (the first one wins), with the current position. */
void tk_json_fail(tk_json *json, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* An object starts: `{`, or serde's "invalid type: …, expected {expected}". */
bool tk_json_object(tk_json *json, const char *expected);
/* The next key of the object opened by tk_json_object (`first` for its first
 * key): true with the key, false at `}` (consumed) or on error. */
bool tk_json_key(tk_json *json, bool *first, tk_str *key);
/* The `:` after a key. */
bool tk_json_colon(tk_json *json);
/* A value of each kind, or serde's "invalid type" error. Strings are copied
 * (escapes decoded) and stay valid until tk_json_free. */
bool tk_json_string(tk_json *json, tk_str *out);
bool tk_json_f64(tk_json *json, double *out);
bool tk_json_bool(tk_json *json, bool *out);
/* After the top-level value: nothing but whitespace. */
bool tk_json_end(tk_json *json);
/* serde's "unknown field `name`, expected …" for `fields` (NULL-ended). */
void tk_json_unknown_field(tk_json *json, tk_str name, const char *const *fields);

/* A map of strings to f64 (a rate card), in document order; a repeated key
 * keeps its last value, as serde's `HashMap`. */
typedef struct {
  tk_str *keys;
  double *values;
  size_t count;
  size_t cap;
} tk_rates;

/* Reads a JSON object of numbers into `rates`. */
bool tk_json_rates(tk_json *json, tk_rates *rates);
/* Refuses a negative (or non-finite) rate and a meter named twice in
 * different cases, with the Rust adapters' reasons (after "config: "). */
bool tk_rates_check(const tk_rates *rates, tk_buf *error);
/* The rate of a meter (its id in any ASCII case), or NULL. */
const double *tk_rates_find(const tk_rates *rates, tk_str meter);
void tk_rates_free(tk_rates *rates);
/* Refuses a currency that is not three ASCII capitals (ISO 4217's form). */
bool tk_currency_check(tk_str currency, tk_buf *error);

#endif
