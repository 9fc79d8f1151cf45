/* Helpers shared by tally's C adapters: see tally_kit.h. */
#include "tally_kit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- Memory, strings, buffers ------------------------------------------- */

void *tk_alloc(size_t bytes) {
  void *ptr = malloc(bytes ? bytes : 1);
  if (!ptr) abort();
  return ptr;
}

void *tk_realloc(void *ptr, size_t bytes) {
  ptr = realloc(ptr, bytes ? bytes : 1);
  if (!ptr) abort();
  return ptr;
}

tk_str tk_cstr(const char *text) { return (tk_str){text, strlen(text)}; }

bool tk_str_eq(tk_str a, tk_str b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int tk_str_cmp(tk_str a, tk_str b) {
  size_t n = a.len < b.len ? a.len : b.len;
  int order = n ? memcmp(a.ptr, b.ptr, n) : 0;
  if (order) return order;
  return a.len < b.len ? -1 : a.len > b.len;
}

static int by_bytes(const void *a, const void *b) {
  return tk_str_cmp(*(const tk_str *)a, *(const tk_str *)b);
}

void tk_sort_strs(tk_str *strings, size_t count) {
  qsort(strings, count, sizeof *strings, by_bytes);
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

bool tk_str_eq_ignore_ascii_case(tk_str a, tk_str b) {
  if (a.len != b.len) return false;
  for (size_t i = 0; i < a.len; i++)
    if (ascii_lower(a.ptr[i]) != ascii_lower(b.ptr[i])) return false;
  return true;
}

/* Decodes one UTF-8 character (the text is valid UTF-8: it came through a
 * WIT string or was checked by the JSON reader). */
static uint32_t utf8_next(tk_str text, size_t *i) {
  const unsigned char *s = (const unsigned char *)text.ptr;
  uint32_t c = s[(*i)++];
  int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
  if (more) c &= 0x3F >> more;
  while (more-- && *i < text.len) c = (c << 6) | (s[(*i)++] & 0x3F);
  return c;
}

/* Unicode White_Space, which Rust's `str::trim` strips. */
static bool is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool tk_str_is_blank(tk_str text) {
  for (size_t i = 0; i < text.len;)
    if (!is_white_space(utf8_next(text, &i))) return false;
  return true;
}

void tk_buf_reserve(tk_buf *buf, size_t more) {
  if (buf->len + more + 1 <= buf->cap) return;
  size_t cap = buf->cap ? buf->cap : 64;
  while (cap < buf->len + more + 1) cap *= 2;
  buf->data = tk_realloc(buf->data, cap);
  buf->cap = cap;
}

void tk_buf_put(tk_buf *buf, const char *bytes, size_t len) {
  tk_buf_reserve(buf, len);
  if (len) memcpy(buf->data + buf->len, bytes, len);
  buf->len += len;
  buf->data[buf->len] = 0;
}

void tk_buf_puts(tk_buf *buf, const char *text) { tk_buf_put(buf, text, strlen(text)); }
void tk_buf_str(tk_buf *buf, tk_str text) { tk_buf_put(buf, text.ptr, text.len); }
void tk_buf_char(tk_buf *buf, char c) { tk_buf_put(buf, &c, 1); }

static void buf_vprintf(tk_buf *buf, const char *format, va_list args) {
  va_list again;
  va_copy(again, args);
  tk_buf_reserve(buf, 64);
  int n = vsnprintf(buf->data + buf->len, buf->cap - buf->len, format, args);
  if (n >= 0 && (size_t)n >= buf->cap - buf->len) {
    tk_buf_reserve(buf, (size_t)n);
    vsnprintf(buf->data + buf->len, buf->cap - buf->len, format, again);
  }
  va_end(again);
  if (n > 0) buf->len += (size_t)n;
}

void tk_buf_printf(tk_buf *buf, const char *format, ...) {
  va_list args;
  va_start(args, format);
  buf_vprintf(buf, format, args);
  va_end(args);
}

tk_str tk_buf_view(const tk_buf *buf) { return (tk_str){buf->data, buf->len}; }

void tk_buf_clear(tk_buf *buf) {
  buf->len = 0;
  if (buf->data) buf->data[0] = 0;
}

void tk_buf_free(tk_buf *buf) {
  free(buf->data);
  *buf = (tk_buf){0};
}

/* --- CSV, dates, names --------------------------------------------------- */

void tk_csv_field(tk_buf *buf, tk_str value) {
  bool quote = false;
  for (size_t i = 0; i < value.len && !quote; i++) {
    char c = value.ptr[i];
    quote = c == ',' || c == '"' || c == '\n' || c == '\r';
  }
  if (!quote) {
    tk_buf_str(buf, value);
    return;
  }
  tk_buf_char(buf, '"');
  for (size_t i = 0; i < value.len; i++) {
    if (value.ptr[i] == '"') tk_buf_char(buf, '"');
    tk_buf_char(buf, value.ptr[i]);
  }
  tk_buf_char(buf, '"');
}

int64_t tk_div_floor(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void tk_iso_date(tk_buf *buf, int64_t days) {
  int64_t z = days + 719468;
  int64_t era = tk_div_floor(z, 146097);
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t day = doy - (153 * mp + 2) / 5 + 1;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2);
  /* Rust's `{:04}` pads to 4 characters, a minus sign included. */
  if (year < 0)
    tk_buf_printf(buf, "-%03lld-%02lld-%02lld", (long long)-year, (long long)month,
                  (long long)day);
  else
    tk_buf_printf(buf, "%04lld-%02lld-%02lld", (long long)year, (long long)month,
                  (long long)day);
}

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) +
                  SHA256_K[i] + w[i];
    uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void tk_sha256(const void *bytes, size_t len, uint8_t digest[32]) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const uint8_t *p = bytes;
  size_t left = len;
  for (; left >= 64; left -= 64, p += 64) sha256_block(h, p);
  uint8_t tail[128] = {0};
  memcpy(tail, p, left);
  tail[left] = 0x80;
  size_t tail_len = left < 56 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t i = 0; i < tail_len; i += 64) sha256_block(h, tail + i);
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

/* Longest document name the host takes (`[A-Za-z0-9._-]{1,128}`). */
#define MAX_DOCUMENT_NAME 128

void tk_document_name(tk_buf *buf, const char *prefix, tk_str subscription,
                      const char *suffix) {
  bool plain = subscription.len > 0 &&
               strlen(prefix) + subscription.len + strlen(suffix) <= MAX_DOCUMENT_NAME;
  for (size_t i = 0; i < subscription.len && plain; i++) {
    char c = subscription.ptr[i];
    plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-';
  }
  tk_buf_puts(buf, prefix);
  if (plain) {
    tk_buf_str(buf, subscription);
  } else {
    uint8_t digest[32];
    tk_sha256(subscription.ptr, subscription.len, digest);
    for (int i = 0; i < 8; i++) tk_buf_printf(buf, "%02x", digest[i]);
  }
  tk_buf_puts(buf, suffix);
}

/* --- Floats ---------------------------------------------------------------- */

/* The shortest decimal digits of a finite, non-zero |x| that read back as
 * x: `digits` (no trailing zeros, NUL-ended) times 10^(exponent - count + 1),
 * i.e. d.ddd × 10^exponent. Of the two nearest candidates of that length,
 * the nearer wins; a tie goes to the greater (Rust's Grisu/Dragon) or, with
 * `tie_to_even`, to the even one (serde_json's zmij). */
static int shortest_digits(double x, bool tie_to_even, char digits[24], int *exponent) {
  /* The exact decimal expansion (a double has at most 767 significant
   * digits); printf is exact in musl and glibc. */
  char exact[800];
  snprintf(exact, sizeof exact, "%.770e", fabs(x));
  char all[780];
  int count = 0;
  const char *p = exact;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') all[count++] = *p;
  int e = atoi(p + 1);
  for (int n = 1; n <= 17; n++) {
    /* rest: the digits after the n-th, compared with half a unit of it. */
    int rest = 0; /* -1 below half, 0 half, 1 above, 2 zero */
    bool zero = true;
    for (int i = n; i < count; i++)
      if (all[i] != '0') zero = false;
    if (zero) {
      memcpy(digits, all, n);
      digits[n] = 0;
      *exponent = e;
      goto trim;
    }
    if (all[n] > '5')
      rest = 1;
    else if (all[n] < '5')
      rest = -1;
    else {
      rest = 0;
      for (int i = n + 1; i < count; i++)
        if (all[i] != '0') rest = 1;
    }
    char lo[24], hi[24];
    memcpy(lo, all, n);
    lo[n] = 0;
    memcpy(hi, all, n);
    hi[n] = 0;
    int hi_e = e;
    int i = n - 1;
    while (i >= 0 && hi[i] == '9') hi[i--] = '0';
    if (i >= 0) {
      hi[i]++;
    } else {
      hi[0] = '1'; /* 99…9 + 1: one more digit, dropped again below */
      hi_e++;
    }
    char text[48];
    snprintf(text, sizeof text, "%c.%se%d", lo[0], lo + 1, e);
    bool lo_ok = strtod(text, NULL) == fabs(x);
    snprintf(text, sizeof text, "%c.%se%d", hi[0], hi + 1, hi_e);
    bool hi_ok = strtod(text, NULL) == fabs(x);
    bool lo_nearer = rest < 0 || (rest == 0 && tie_to_even && (lo[n - 1] - '0') % 2 == 0);
    if (lo_ok && (!hi_ok || lo_nearer)) {
      memcpy(digits, lo, n + 1);
      *exponent = e;
      goto trim;
    }
    if (hi_ok) {
      memcpy(digits, hi, n + 1);
      *exponent = hi_e;
      goto trim;
    }
  }
  /* 17 digits always read back: not reached. */
  memcpy(digits, all, 17);
  digits[17] = 0;
  *exponent = e;
trim:;
  int len = (int)strlen(digits);
  while (len > 1 && digits[len - 1] == '0') digits[--len] = 0;
  return len;
}

/* d.ddd × 10^exponent written positionally; `point` adds ".0" to a whole
 * number. */
static void positional(tk_buf *buf, const char *digits, int count, int exponent,
                       bool point) {
  if (exponent < 0) {
    tk_buf_puts(buf, "0.");
    for (int i = 0; i < -exponent - 1; i++) tk_buf_char(buf, '0');
    tk_buf_put(buf, digits, (size_t)count);
  } else if (exponent >= count - 1) {
    tk_buf_put(buf, digits, (size_t)count);
    for (int i = 0; i < exponent - (count - 1); i++) tk_buf_char(buf, '0');
    if (point) tk_buf_puts(buf, ".0");
  } else {
    tk_buf_put(buf, digits, (size_t)exponent + 1);
    tk_buf_char(buf, '.');
    tk_buf_put(buf, digits + exponent + 1, (size_t)(count - exponent - 1));
  }
}

static bool special(tk_buf *buf, double x, const char *zero) {
  if (isnan(x)) {
    tk_buf_puts(buf, "NaN");
    return true;
  }
  if (signbit(x)) tk_buf_char(buf, '-');
  if (isinf(x)) {
    tk_buf_puts(buf, "inf");
    return true;
  }
  if (x == 0) {
    tk_buf_puts(buf, zero);
    return true;
  }
  return false;
}

void tk_rust_display(tk_buf *buf, double x) {
  if (special(buf, x, "0")) return;
  char digits[24];
  int exponent;
  int count = shortest_digits(x, false, digits, &exponent);
  positional(buf, digits, count, exponent, false);
}

void tk_serde_float(tk_buf *buf, double x) {
  if (special(buf, x, "0.0")) return;
  char digits[24];
  int exponent;
  int count = shortest_digits(x, true, digits, &exponent);
  if (exponent >= -5 && exponent <= 15) {
    positional(buf, digits, count, exponent, true);
    return;
  }
  tk_buf_char(buf, digits[0]);
  if (count > 1) {
    tk_buf_char(buf, '.');
    tk_buf_puts(buf, digits + 1);
  }
  tk_buf_printf(buf, "e%c%d", exponent < 0 ? '-' : '+', abs(exponent));
}

void tk_fixed6(tk_buf *buf, double x) {
  if (isnan(x) || isinf(x)) {
    special(buf, x, "");
    return;
  }
  /* printf rounds the exact binary value half to even, as Rust does. */
  tk_buf_printf(buf, "%.6f", x);
}

void tk_debug_str(tk_buf *buf, tk_str text) {
  tk_buf_char(buf, '"');
  for (size_t i = 0; i < text.len; i++) {
    unsigned char c = (unsigned char)text.ptr[i];
    switch (c) {
    case '"': tk_buf_puts(buf, "\\\""); break;
    case '\\': tk_buf_puts(buf, "\\\\"); break;
    case '\n': tk_buf_puts(buf, "\\n"); break;
    case '\r': tk_buf_puts(buf, "\\r"); break;
    case '\t': tk_buf_puts(buf, "\\t"); break;
    case 0: tk_buf_puts(buf, "\\0"); break;
    default:
      if (c < 0x20 || c == 0x7F)
        tk_buf_printf(buf, "\\u{%x}", c);
      else
        tk_buf_char(buf, (char)c);
    }
  }
  tk_buf_char(buf, '"');
}

/* --- Interning ------------------------------------------------------------- */

static uint32_t hash_bytes(tk_str s) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < s.len; i++) h = (h ^ (unsigned char)s.ptr[i]) * 16777619u;
  return h;
}

uint32_t tk_interned(const tk_interner *in, tk_str name) {
  if (!in->slots) return UINT32_MAX;
  for (uint32_t i = hash_bytes(name) & in->slot_mask;; i = (i + 1) & in->slot_mask) {
    uint32_t slot = in->slots[i];
    if (!slot) return UINT32_MAX;
    if (tk_str_eq(in->names[slot - 1], name)) return slot - 1;
  }
}

static void intern_grow(tk_interner *in) {
  uint32_t size = in->slots ? (in->slot_mask + 1) * 2 : 256;
  free(in->slots);
  in->slots = calloc(size, sizeof *in->slots);
  if (!in->slots) abort();
  in->slot_mask = size - 1;
  for (uint32_t id = 0; id < in->count; id++) {
    uint32_t i = hash_bytes(in->names[id]) & in->slot_mask;
    while (in->slots[i]) i = (i + 1) & in->slot_mask;
    in->slots[i] = id + 1;
  }
}

uint32_t tk_intern(tk_interner *in, tk_str name) {
  uint32_t id = tk_interned(in, name);
  if (id != UINT32_MAX) return id;
  if (!in->slots || (in->count + 1) * 2 > in->slot_mask + 1) intern_grow(in);
  if (in->count == in->cap) {
    in->cap = in->cap ? in->cap * 2 : 64;
    in->names = tk_realloc(in->names, in->cap * sizeof *in->names);
  }
  char *copy = tk_alloc(name.len + 1);
  if (name.len) memcpy(copy, name.ptr, name.len);
  copy[name.len] = 0;
  id = in->count++;
  in->names[id] = (tk_str){copy, name.len};
  uint32_t i = hash_bytes(name) & in->slot_mask;
  while (in->slots[i]) i = (i + 1) & in->slot_mask;
  in->slots[i] = id + 1;
  return id;
}

void tk_interner_free(tk_interner *in) {
  for (uint32_t id = 0; id < in->count; id++) free((void *)in->names[id].ptr);
  free(in->names);
  free(in->slots);
  *in = (tk_interner){0};
}

/* --- JSON, as serde_json reads it ------------------------------------------ */

void tk_json_init(tk_json *json, const char *text, size_t len) {
  *json = (tk_json){.text = text, .len = len};
}

void tk_json_free(tk_json *json) {
  for (size_t i = 0; i < json->owned_count; i++) free(json->owned[i]);
  free(json->owned);
  tk_buf_free(&json->scratch);
  tk_buf_free(&json->error);
}

bool tk_json_failed(const tk_json *json) { return json->error.len > 0; }

/* serde_json's position: the line, and the bytes read on it. */
static void fail_at(tk_json *json, size_t pos, const char *format, va_list args) {
  if (tk_json_failed(json)) return;
  buf_vprintf(&json->error, format, args);
  size_t line = 1, column = 0;
  for (size_t i = 0; i < pos && i < json->len; i++) {
    if (json->text[i] == '\n') {
      line++;
      column = 0;
    } else {
      column++;
    }
  }
  tk_buf_printf(&json->error, " at line %zu column %zu", line, column);
}

void tk_json_fail(tk_json *json, const char *format, ...) {
  va_list args;
  va_start(args, format);
  fail_at(json, json->pos, format, args);
  va_end(args);
}

/* An error at the byte looked at but not read (serde's `peek_error`). */
static void fail_peek(tk_json *json, const char *format, ...) {
  va_list args;
  va_start(args, format);
  fail_at(json, json->pos + 1, format, args);
  va_end(args);
}

static int peek(tk_json *json) {
  while (json->pos < json->len) {
    char c = json->text[json->pos];
    if (c != ' ' && c != '\n' && c != '\t' && c != '\r') return (unsigned char)c;
    json->pos++;
  }
  return -1;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

/* A string's body after its opening quote, decoded into the scratch buffer. */
static bool read_string(tk_json *json, tk_str *out) {
  tk_buf *s = &json->scratch;
  tk_buf_clear(s);
  for (;;) {
    if (json->pos >= json->len) {
      tk_json_fail(json, "EOF while parsing a string");
      return false;
    }
    unsigned char c = (unsigned char)json->text[json->pos++];
    if (c == '"') break;
    if (c < 0x20) {
      tk_json_fail(json, "control character (\\u0000-\\u001F) found while parsing a string");
      return false;
    }
    if (c != '\\') {
      tk_buf_char(s, (char)c);
      continue;
    }
    if (json->pos >= json->len) {
      tk_json_fail(json, "EOF while parsing a string");
      return false;
    }
    char e = json->text[json->pos++];
    const char *simple = strchr("\"\\/bfnrt", e);
    if (simple && e) {
      tk_buf_char(s, "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"]);
      continue;
    }
    if (e != 'u') {
      tk_json_fail(json, "invalid escape");
      return false;
    }
    uint32_t code = 0;
    for (int pair = 0; pair < 2; pair++) {
      uint32_t unit = 0;
      for (int i = 0; i < 4; i++) {
        if (json->pos >= json->len) {
          tk_json_fail(json, "EOF while parsing a string");
          return false;
        }
        char h = json->text[json->pos++];
        int v = is_digit(h) ? h - '0' : (h | 32) >= 'a' && (h | 32) <= 'f' ? (h | 32) - 'a' + 10 : -1;
        if (v < 0) {
          tk_json_fail(json, "invalid escape");
          return false;
        }
        unit = unit * 16 + (uint32_t)v;
      }
      if (pair == 0) {
        if (unit >= 0xDC00 && unit <= 0xDFFF) {
          tk_json_fail(json, "lone leading surrogate in hex escape");
          return false;
        }
        code = unit;
        if (unit < 0xD800 || unit > 0xDBFF) break;
        if (json->pos + 1 >= json->len || json->text[json->pos] != '\\' ||
            json->text[json->pos + 1] != 'u') {
          tk_json_fail(json, "unexpected end of hex escape");
          return false;
        }
        json->pos += 2;
      } else {
        if (unit < 0xDC00 || unit > 0xDFFF) {
          tk_json_fail(json, "lone leading surrogate in hex escape");
          return false;
        }
        code = 0x10000 + ((code - 0xD800) << 10) + (unit - 0xDC00);
      }
    }
    char utf8[4];
    int n;
    if (code < 0x80)
      utf8[0] = (char)code, n = 1;
    else if (code < 0x800)
      utf8[0] = (char)(0xC0 | code >> 6), utf8[1] = (char)(0x80 | (code & 0x3F)), n = 2;
    else if (code < 0x10000)
      utf8[0] = (char)(0xE0 | code >> 12), utf8[1] = (char)(0x80 | ((code >> 6) & 0x3F)),
      utf8[2] = (char)(0x80 | (code & 0x3F)), n = 3;
    else
      utf8[0] = (char)(0xF0 | code >> 18), utf8[1] = (char)(0x80 | ((code >> 12) & 0x3F)),
      utf8[2] = (char)(0x80 | ((code >> 6) & 0x3F)), utf8[3] = (char)(0x80 | (code & 0x3F)),
      n = 4;
    tk_buf_put(s, utf8, (size_t)n);
  }
  /* Each string gets its own copy, freed by tk_json_free. */
  char *copy = tk_alloc(s->len + 1);
  if (s->len) memcpy(copy, s->data, s->len);
  copy[s->len] = 0;
  if (json->owned_count == json->owned_cap) {
    json->owned_cap = json->owned_cap ? json->owned_cap * 2 : 16;
    json->owned = tk_realloc(json->owned, json->owned_cap * sizeof *json->owned);
  }
  json->owned[json->owned_count++] = copy;
  *out = (tk_str){copy, s->len};
  return true;
}

/* Whether the digits (no sign, no leading zero) fit under `limit`, the
 * largest value of an integer type in decimal. */
static bool fits(const char *digits, size_t n, const char *limit) {
  size_t m = strlen(limit);
  return n < m || (n == m && memcmp(digits, limit, n) <= 0);
}

/* A number (its first byte peeked), as serde_json reads one: `integer` when
 * it is written as one and fits (u64, or i64 when negative; "-0" is a
 * float, -0.0), else a float. */
static bool read_number(tk_json *json, double *value, bool *integer) {
  size_t start = json->pos;
  bool negative = json->text[json->pos] == '-';
  if (negative) json->pos++;
  if (json->pos >= json->len) {
    tk_json_fail(json, "EOF while parsing a value");
    return false;
  }
  if (!is_digit(json->text[json->pos])) {
    json->pos++;
    tk_json_fail(json, "invalid number");
    return false;
  }
  size_t digits = json->pos;
  bool leading_zero = json->text[json->pos] == '0';
  json->pos++;
  if (leading_zero && json->pos < json->len && is_digit(json->text[json->pos])) {
    json->pos++;
    tk_json_fail(json, "invalid number");
    return false;
  }
  while (json->pos < json->len && is_digit(json->text[json->pos])) json->pos++;
  size_t digits_end = json->pos;
  bool fraction = false;
  for (int part = 0; part < 2; part++) {
    char mark = part == 0 ? '.' : 'e';
    if (json->pos >= json->len || (json->text[json->pos] | (part ? 32 : 0)) != mark) continue;
    fraction = true;
    json->pos++;
    if (part == 1 && json->pos < json->len &&
        (json->text[json->pos] == '+' || json->text[json->pos] == '-'))
      json->pos++;
    if (json->pos >= json->len) {
      tk_json_fail(json, "EOF while parsing a value");
      return false;
    }
    if (!is_digit(json->text[json->pos])) {
      json->pos++;
      tk_json_fail(json, "invalid number");
      return false;
    }
    while (json->pos < json->len && is_digit(json->text[json->pos])) json->pos++;
  }
  size_t n = json->pos - start;
  char small[64];
  char *text = n < sizeof small ? small : tk_alloc(n + 1);
  memcpy(text, json->text + start, n);
  text[n] = 0;
  *value = strtod(text, NULL);
  if (text != small) free(text);
  bool zero = leading_zero && digits_end == digits + 1;
  *integer = !fraction &&
             (negative ? !zero && fits(json->text + digits, digits_end - digits,
                                       "9223372036854775808")
                       : fits(json->text + digits, digits_end - digits, "18446744073709551615"));
  if (isinf(*value)) {
    tk_json_fail(json, "number out of range");
    return false;
  }
  return true;
}

/* serde's "invalid type: {what the value is}, expected {expected}", after
 * reading the value that is there (serde_json's `peek_invalid_type`). */
static void invalid_type(tk_json *json, const char *expected) {
  int c = peek(json);
  tk_buf what = {0};
  if (c == -1) {
    fail_peek(json, "EOF while parsing a value");
    return;
  }
  if (c == 'n' || c == 't' || c == 'f') {
    const char *word = c == 'n' ? "null" : c == 't' ? "true" : "false";
    size_t i = 0;
    for (; word[i]; i++) {
      if (json->pos >= json->len) {
        tk_json_fail(json, "EOF while parsing a value");
        return;
      }
      if (json->text[json->pos++] != word[i]) {
        tk_json_fail(json, "expected ident");
        return;
      }
    }
    tk_buf_puts(&what, c == 'n' ? "null" : c == 't' ? "boolean `true`" : "boolean `false`");
  } else if (c == '-' || is_digit(c)) {
    size_t start = json->pos;
    double value;
    bool integer;
    if (!read_number(json, &value, &integer)) return;
    if (integer) {
      tk_buf_puts(&what, "integer `");
      tk_buf_put(&what, json->text + start, json->pos - start);
      tk_buf_char(&what, '`');
    } else {
      tk_buf_puts(&what, "floating point `");
      tk_serde_float(&what, value);
      tk_buf_char(&what, '`');
    }
  } else if (c == '"') {
    json->pos++;
    tk_str s;
    if (!read_string(json, &s)) return;
    tk_buf_puts(&what, "string ");
    tk_debug_str(&what, s);
  } else if (c == '[') {
    tk_buf_puts(&what, "sequence");
  } else if (c == '{') {
    tk_buf_puts(&what, "map");
  } else {
    fail_peek(json, "expected value");
    return;
  }
  tk_json_fail(json, "invalid type: %s, expected %s", what.data, expected);
  tk_buf_free(&what);
}

bool tk_json_object(tk_json *json, const char *expected) {
  if (tk_json_failed(json)) return false;
  int c = peek(json);
  if (c == '{') {
    json->pos++;
    return true;
  }
  if (c == -1)
    fail_peek(json, "EOF while parsing a value");
  else
    invalid_type(json, expected);
  return false;
}

bool tk_json_key(tk_json *json, bool *first, tk_str *key) {
  if (tk_json_failed(json)) return false;
  int c = peek(json);
  if (c == '}') {
    json->pos++;
    return false;
  }
  if (c == ',' && !*first) {
    json->pos++;
    c = peek(json);
  } else if (c != -1 && !*first) {
    fail_peek(json, "expected `,` or `}`");
    return false;
  } else if (c == -1) {
    fail_peek(json, "EOF while parsing an object");
    return false;
  }
  *first = false;
  if (c == '"') {
    json->pos++;
    tk_str offset;
    if (!read_string(json, &offset)) return false;
    *key = offset;
    return true;
  }
  if (c == '}')
    fail_peek(json, "trailing comma");
  else if (c == -1)
    fail_peek(json, "EOF while parsing a value");
  else
    fail_peek(json, "key must be a string");
  return false;
}

bool tk_json_colon(tk_json *json) {
  if (tk_json_failed(json)) return false;
  int c = peek(json);
  if (c == ':') {
    json->pos++;
    return true;
  }
  fail_peek(json, c == -1 ? "EOF while parsing an object" : "expected `:`");
  return false;
}

bool tk_json_string(tk_json *json, tk_str *out) {
  if (tk_json_failed(json)) return false;
  int c = peek(json);
  if (c == '"') {
    json->pos++;
    tk_str offset;
    if (!read_string(json, &offset)) return false;
    *out = offset;
    return true;
  }
  if (c == -1)
    fail_peek(json, "EOF while parsing a value");
  else
    invalid_type(json, "a string");
  return false;
}

bool tk_json_f64(tk_json *json, double *out) {
  if (tk_json_failed(json)) return false;
  int c = peek(json);
  if (c == '-' || is_digit(c)) {
    bool integer;
    return read_number(json, out, &integer);
  }
  if (c == -1)
    fail_peek(json, "EOF while parsing a value");
  else
    invalid_type(json, "f64");
  return false;
}

bool tk_json_bool(tk_json *json, bool *out) {
  if (tk_json_failed(json)) return false;
  int c = peek(json);
  if (c == 't' || c == 'f') {
    const char *word = c == 't' ? "true" : "false";
    for (size_t i = 0; word[i]; i++) {
      if (json->pos >= json->len) {
        tk_json_fail(json, "EOF while parsing a value");
        return false;
      }
      if (json->text[json->pos++] != word[i]) {
        tk_json_fail(json, "expected ident");
        return false;
      }
    }
    *out = c == 't';
    return true;
  }
  if (c == -1)
    fail_peek(json, "EOF while parsing a value");
  else
    invalid_type(json, "a boolean");
  return false;
}

bool tk_json_end(tk_json *json) {
  if (tk_json_failed(json)) return false;
  if (peek(json) != -1) {
    fail_peek(json, "trailing characters");
    return false;
  }
  return true;
}

void tk_json_unknown_field(tk_json *json, tk_str name, const char *const *fields) {
  tk_buf expected = {0};
  size_t n = 0;
  while (fields[n]) n++;
  if (n == 0)
    tk_buf_puts(&expected, "there are no fields");
  else if (n == 1)
    tk_buf_printf(&expected, "expected `%s`", fields[0]);
  else if (n == 2)
    tk_buf_printf(&expected, "expected `%s` or `%s`", fields[0], fields[1]);
  else {
    tk_buf_puts(&expected, "expected one of ");
    for (size_t i = 0; i < n; i++) tk_buf_printf(&expected, "%s`%s`", i ? ", " : "", fields[i]);
  }
  tk_buf shown = {0};
  tk_buf_str(&shown, name);
  tk_json_fail(json, "unknown field `%s`, %s", shown.data, expected.data);
  tk_buf_free(&shown);
  tk_buf_free(&expected);
}

/* --- Rate cards ------------------------------------------------------------ */

bool tk_json_rates(tk_json *json, tk_rates *rates) {
  if (!tk_json_object(json, "a map")) return false;
  bool first = true;
  tk_str key;
  while (tk_json_key(json, &first, &key)) {
    double value;
    if (!tk_json_colon(json) || !tk_json_f64(json, &value)) return false;
    size_t i = 0;
    while (i < rates->count && !tk_str_eq(rates->keys[i], key)) i++;
    if (i == rates->count) {
      if (rates->count == rates->cap) {
        rates->cap = rates->cap ? rates->cap * 2 : 16;
        rates->keys = tk_realloc(rates->keys, rates->cap * sizeof *rates->keys);
        rates->values = tk_realloc(rates->values, rates->cap * sizeof *rates->values);
      }
      char *copy = tk_alloc(key.len + 1);
      if (key.len) memcpy(copy, key.ptr, key.len);
      copy[key.len] = 0;
      rates->keys[rates->count++] = (tk_str){copy, key.len};
    }
    rates->values[i] = value;
  }
  return !tk_json_failed(json);
}

bool tk_rates_check(const tk_rates *rates, tk_buf *error) {
  for (size_t i = 0; i < rates->count; i++) {
    double rate = rates->values[i];
    if (!isfinite(rate) || rate < 0.0) {
      tk_buf_puts(error, "the rate of meter '");
      tk_buf_str(error, rates->keys[i]);
      tk_buf_puts(error, "' must be a non-negative number, not ");
      tk_rust_display(error, rate);
      return false;
    }
  }
  /* Meter ids ignore case: two spellings of one meter would make its rate a
   * coin toss. Sorted by bytes, as Rust sorts strings. */
  tk_str *ids = tk_alloc(rates->count * sizeof *ids);
  if (rates->count) memcpy(ids, rates->keys, rates->count * sizeof *ids);
  tk_sort_strs(ids, rates->count);
  for (size_t i = 0; i < rates->count; i++)
    for (size_t j = i + 1; j < rates->count; j++)
      if (tk_str_eq_ignore_ascii_case(ids[i], ids[j])) {
        tk_buf_puts(error, "the rate card names meter '");
        tk_buf_str(error, ids[i]);
        tk_buf_puts(error, "' twice ('");
        tk_buf_str(error, ids[i]);
        tk_buf_puts(error, "' and '");
        tk_buf_str(error, ids[j]);
        tk_buf_puts(error, "'; ids ignore case)");
        free(ids);
        return false;
      }
  free(ids);
  return true;
}

const double *tk_rates_find(const tk_rates *rates, tk_str meter) {
  for (size_t i = 0; i < rates->count; i++)
    if (tk_str_eq_ignore_ascii_case(rates->keys[i], meter)) return &rates->values[i];
  return NULL;
}

void tk_rates_free(tk_rates *rates) {
  for (size_t i = 0; i < rates->count; i++) free((void *)rates->keys[i].ptr);
  free(rates->keys);
  free(rates->values);
  *rates = (tk_rates){0};
}

bool tk_currency_check(tk_str currency, tk_buf *error) {
  bool ok = currency.len == 3;
  for (size_t i = 0; i < currency.len && ok; i++)
    ok = currency.ptr[i] >= 'A' && currency.ptr[i] <= 'Z';
  if (!ok) {
    tk_buf_puts(error, "currency '");
    tk_buf_str(error, currency);
    tk_buf_puts(error, "' is not an ISO 4217 code");
  }
  return ok;
}
