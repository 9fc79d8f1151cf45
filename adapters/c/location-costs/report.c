/* The location-costs report: see report.h. */
#include "report.h"

#include <stdlib.h>
#include <string.h>

static const char *const FIELDS[] = {"currency", "rates", "unrated", NULL};

bool report_config_parse(report_config *c, const char *text, size_t len, tk_buf *error) {
  *c = (report_config){.unrated = UNRATED_ZERO};
  tk_json *json = &c->json;
  tk_json_init(json, text, len);
  bool seen[3] = {false};
  tk_str unrated = {"zero", 4};
  if (tk_json_object(json, "struct Config")) {
    bool first = true;
    tk_str key;
    while (tk_json_key(json, &first, &key)) {
      int field = 0;
      while (FIELDS[field] && !tk_str_eq(key, tk_cstr(FIELDS[field]))) field++;
      if (!FIELDS[field]) {
        tk_json_unknown_field(json, key, FIELDS);
        break;
      }
      if (seen[field]) {
        tk_json_fail(json, "duplicate field `%s`", FIELDS[field]);
        break;
      }
      seen[field] = true;
      if (!tk_json_colon(json)) break;
      switch (field) {
      case 0: tk_json_string(json, &c->currency); break;
      case 1: tk_json_rates(json, &c->rates); break;
      case 2: tk_json_string(json, &unrated); break;
      }
      if (tk_json_failed(json)) break;
    }
    for (int field = 0; field < 2 && !tk_json_failed(json); field++)
      if (!seen[field]) tk_json_fail(json, "missing field `%s`", FIELDS[field]);
    tk_json_end(json);
  }
  tk_buf_puts(error, "config: ");
  if (tk_json_failed(json)) {
    tk_buf_str(error, tk_buf_view(&json->error));
    return false;
  }
  if (!tk_currency_check(c->currency, error) || !tk_rates_check(&c->rates, error)) return false;
  if (tk_str_eq(unrated, tk_cstr("fail"))) {
    c->unrated = UNRATED_FAIL;
  } else if (!tk_str_eq(unrated, tk_cstr("zero"))) {
    tk_buf_puts(error, "unrated must be \"zero\" (price usage of a meter without a rate at 0) "
                       "or \"fail\" (fail the run), not ");
    tk_debug_str(error, unrated);
    return false;
  }
  tk_buf_clear(error);
  return true;
}

void report_config_free(report_config *c) {
  tk_rates_free(&c->rates);
  tk_json_free(&c->json);
}

uint32_t report_location(report *r, tk_str location) {
  tk_buf normal = {0};
  for (size_t i = 0; i < location.len; i++) {
    char c = location.ptr[i];
    if (c != ' ') tk_buf_char(&normal, c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  if (!normal.len) tk_buf_puts(&normal, "unknown");
  uint32_t id = tk_intern(&r->names, tk_buf_view(&normal));
  tk_buf_free(&normal);
  return id;
}

uint32_t report_meter(report *r, tk_str meter) { return tk_intern(&r->names, meter); }

static size_t line_hash(uint32_t location, uint32_t meter) {
  uint64_t h = ((uint64_t)location << 32 | meter) * 0x9E3779B97F4A7C15u;
  return (size_t)(h ^ (h >> 29));
}

static void slots_grow(report *r) {
  size_t size = r->slots ? (r->slot_mask + 1) * 2 : 256;
  free(r->slots);
  r->slots = calloc(size, sizeof *r->slots);
  if (!r->slots) abort();
  r->slot_mask = size - 1;
  for (size_t l = 0; l < r->lines_len; l++) {
    size_t i = line_hash(r->lines[l].location, r->lines[l].meter) & r->slot_mask;
    while (r->slots[i]) i = (i + 1) & r->slot_mask;
    r->slots[i] = (uint32_t)l + 1;
  }
}

void report_add(report *r, uint32_t location, uint32_t meter, double quantity) {
  r->rows_read++;
  if (!r->slots || (r->lines_len + 1) * 2 > r->slot_mask + 1) slots_grow(r);
  size_t i = line_hash(location, meter) & r->slot_mask;
  for (; r->slots[i]; i = (i + 1) & r->slot_mask) {
    report_line *line = &r->lines[r->slots[i] - 1];
    if (line->location == location && line->meter == meter) {
      line->quantity += quantity;
      return;
    }
  }
  if (r->lines_len == r->lines_cap) {
    r->lines_cap = r->lines_cap ? r->lines_cap * 2 : 64;
    r->lines = tk_realloc(r->lines, r->lines_cap * sizeof *r->lines);
  }
  r->lines[r->lines_len] = (report_line){location, meter, quantity};
  r->slots[i] = (uint32_t)++r->lines_len;
}

void report_free(report *r) {
  tk_interner_free(&r->names);
  free(r->lines);
  free(r->slots);
  *r = (report){0};
}

/* qsort has no context argument: the names being compared, and the
 * locations' totals. */
static const tk_str *sorting_names;
static const double *sorting_totals;

static int by_location_and_meter(const void *pa, const void *pb) {
  const report_line *a = pa, *b = pb;
  int order = tk_str_cmp(sorting_names[a->location], sorting_names[b->location]);
  return order ? order : tk_str_cmp(sorting_names[a->meter], sorting_names[b->meter]);
}

/* Locations (indexes into the totals) by cost, the greatest first. */
static int by_cost(const void *pa, const void *pb) {
  uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
  double ca = sorting_totals[a], cb = sorting_totals[b];
  if (ca != cb) return ca > cb ? -1 : 1;
  return a < b ? -1 : a > b;
}

double report_render(report *r, const report_config *config, meter_lookup lookup,
                     void *context, tk_buf *costs, tk_buf *totals, tk_interner *unrated) {
  sorting_names = r->names.names;
  qsort(r->lines, r->lines_len, sizeof *r->lines, by_location_and_meter);
  free(r->slots); /* the lines moved: the index is stale */
  r->slots = NULL;
  tk_buf_puts(costs, "location,meter_id,meter_name,unit,quantity,rate,cost,currency\n");
  /* Each location's total, in order of first appearance (sorted by name). */
  double *location_cost = tk_alloc((r->lines_len + 1) * sizeof *location_cost);
  uint32_t *location_id = tk_alloc((r->lines_len + 1) * sizeof *location_id);
  size_t locations = 0;
  double total = 0.0;
  for (size_t l = 0; l < r->lines_len; l++) {
    const report_line *line = &r->lines[l];
    tk_str location = r->names.names[line->location], meter = r->names.names[line->meter];
    const double *rated = tk_rates_find(&config->rates, meter);
    if (!rated) tk_intern(unrated, meter);
    double rate = rated ? *rated : 0.0, cost = line->quantity * rate;
    meter_info info = lookup(context, meter);
    tk_csv_field(costs, location);
    tk_buf_char(costs, ',');
    tk_csv_field(costs, meter);
    tk_buf_char(costs, ',');
    tk_csv_field(costs, info.name);
    tk_buf_char(costs, ',');
    tk_csv_field(costs, info.unit);
    tk_buf_char(costs, ',');
    tk_rust_display(costs, line->quantity);
    tk_buf_char(costs, ',');
    tk_rust_display(costs, rate);
    tk_buf_char(costs, ',');
    tk_rust_display(costs, cost);
    tk_buf_char(costs, ',');
    tk_buf_str(costs, config->currency);
    tk_buf_char(costs, '\n');
    if (!locations || location_id[locations - 1] != line->location) {
      location_id[locations] = line->location;
      location_cost[locations++] = 0.0;
    }
    location_cost[locations - 1] += cost;
    total += cost;
  }
  uint32_t *order = tk_alloc((locations + 1) * sizeof *order);
  for (uint32_t i = 0; i < locations; i++) order[i] = i;
  sorting_totals = location_cost;
  qsort(order, locations, sizeof *order, by_cost);
  tk_buf_puts(totals, "location,cost,currency,share_percent\n");
  for (size_t i = 0; i < locations; i++) {
    uint32_t at = order[i];
    tk_csv_field(totals, r->names.names[location_id[at]]);
    tk_buf_char(totals, ',');
    tk_rust_display(totals, location_cost[at]);
    tk_buf_char(totals, ',');
    tk_buf_str(totals, config->currency);
    tk_buf_printf(totals, ",%.2f\n", total > 0 ? location_cost[at] * 100.0 / total : 0.0);
  }
  free(order);
  free(location_id);
  free(location_cost);
  return total;
}
