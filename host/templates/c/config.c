/* Reads the configuration: a strict little JSON reader for exactly its shape,
 * `{"currency": "…", "rates": {"<meter id>": <number>, …}}`. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *start, *at, *end;
  char *error;
  size_t error_size;
} reader;

static bool fail(reader *r, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(r->error, r->error_size, format, args);
  va_end(args);
  return false;
}

static void skip_space(reader *r) {
  while (r->at < r->end && strchr(" \t\r\n", *r->at)) r->at++;
}

static bool expect(reader *r, char c) {
  skip_space(r);
  if (r->at < r->end && *r->at == c) {
    r->at++;
    return true;
  }
  return fail(r, "config: expected '%c' at byte %zu", c, (size_t)(r->at - r->start));
}

/* A JSON string into `out` (at most `size` - 1 bytes; longer is refused). */
static bool read_string(reader *r, char *out, size_t size) {
  if (!expect(r, '"')) return false;
  size_t n = 0;
  while (r->at < r->end && *r->at != '"') {
    char c = *r->at++;
    if (c == '\\') {
      if (r->at >= r->end) break;
      c = *r->at++;
      const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
      const char *escape = c ? strchr(from, c) : NULL;
      if (!escape) return fail(r, "config: unsupported escape \\%c in a string", c);
      c = to[escape - from];
    }
    if (n + 1 >= size) return fail(r, "config: a string is longer than %zu bytes", size - 1);
    out[n++] = c;
  }
  if (r->at >= r->end) return fail(r, "config: a string is not closed");
  r->at++;
  out[n] = 0;
  return true;
}

static bool read_rates(reader *r, config *config) {
  if (!expect(r, '{')) return false;
  skip_space(r);
  if (r->at < r->end && *r->at == '}') return r->at++, true;
  do {
    rate entry;
    if (!read_string(r, entry.id, sizeof entry.id) || !expect(r, ':')) return false;
    skip_space(r);
    char *number_end;
    entry.price = strtod(r->at, &number_end);
    if (number_end == r->at || number_end > r->end)
      return fail(r, "config: the rate of '%s' must be a number", entry.id);
    r->at = number_end;
    if (!isfinite(entry.price) || entry.price < 0)
      return fail(r, "config: the rate of '%s' must be a non-negative number", entry.id);
    for (char *c = entry.id; *c; c++)
      if (*c >= 'A' && *c <= 'Z') *c += 32;
    config->rates = realloc(config->rates, (config->rates_len + 1) * sizeof *config->rates);
    if (!config->rates) abort();
    config->rates[config->rates_len++] = entry;
    skip_space(r);
  } while (r->at < r->end && *r->at == ',' && r->at++);
  return expect(r, '}');
}

bool config_parse(config *config, const char *json, size_t len, char *error, size_t error_size) {
  memset(config, 0, sizeof *config);
  reader r = {json, json, json + len, error, error_size};
  bool currency = false;
  if (!expect(&r, '{')) return false;
  skip_space(&r);
  if (r.at < r.end && *r.at == '}') {
    r.at++;
  } else {
    do {
      char key[64];
      if (!read_string(&r, key, sizeof key) || !expect(&r, ':')) return false;
      if (strcmp(key, "currency") == 0) {
        char code[16];
        if (!read_string(&r, code, sizeof code)) return false;
        bool iso = strlen(code) == 3;
        for (int i = 0; i < 3 && iso; i++) iso = code[i] >= 'A' && code[i] <= 'Z';
        if (!iso) return fail(&r, "config: currency '%s' is not an ISO 4217 code", code);
        memcpy(config->currency, code, 4);
        currency = true;
      } else if (strcmp(key, "rates") == 0) {
        if (!read_rates(&r, config)) return false;
      } else {
        return fail(&r, "config: unknown field '%s' (expected currency, rates)", key);
      }
      skip_space(&r);
    } while (r.at < r.end && *r.at == ',' && r.at++);
    if (!expect(&r, '}')) return false;
  }
  if (!currency) return fail(&r, "config: currency is missing");
  return true;
}

double config_rate(const config *config, const char *meter, size_t len) {
  for (size_t i = 0; i < config->rates_len; i++) {
    const char *id = config->rates[i].id;
    bool same = strlen(id) == len;
    for (size_t j = 0; j < len && same; j++) {
      char c = meter[j] >= 'A' && meter[j] <= 'Z' ? meter[j] + 32 : meter[j];
      same = c == id[j];
    }
    if (same) return config->rates[i].price;
  }
  return 0.0;
}

void config_free(config *config) {
  free(config->rates);
  config->rates = NULL;
}
