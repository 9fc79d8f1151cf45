/* The chargeback transform: see rating.h. */
#include "rating.h"

#include <stdlib.h>
#include <string.h>

static const char HEADER[] =
    "date,group,subscription_id,meter_id,meter_name,unit,quantity,rate,cost,currency\n";
static const char UNALLOCATED[] = "unallocated";
/* Bytes of CSV handed over at a time. */
#define PIECE_BYTES (64 * 1024)

static const char *const FIELDS[] = {"currency", "group_by_tag", "rates", "per_subscription",
                                     NULL};

bool config_parse(config *c, const char *text, size_t len, tk_buf *error) {
  *c = (config){0};
  tk_json *json = &c->json;
  tk_json_init(json, text, len);
  bool seen[4] = {false};
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
      case 1: tk_json_string(json, &c->group_by_tag); break;
      case 2: tk_json_rates(json, &c->rates); break;
      case 3: tk_json_bool(json, &c->per_subscription); break;
      }
      if (tk_json_failed(json)) break;
    }
    for (int field = 0; field < 3 && !tk_json_failed(json); field++)
      if (!seen[field]) tk_json_fail(json, "missing field `%s`", FIELDS[field]);
    tk_json_end(json);
  }
  tk_buf_puts(error, "config: ");
  if (tk_json_failed(json)) {
    tk_buf_str(error, tk_buf_view(&json->error));
    return false;
  }
  if (!tk_currency_check(c->currency, error)) return false;
  if (tk_str_is_blank(c->group_by_tag)) {
    tk_buf_puts(error, "group_by_tag must not be empty");
    return false;
  }
  if (!tk_rates_check(&c->rates, error)) return false;
  tk_buf_clear(error);
  return true;
}

void config_free(config *c) {
  tk_rates_free(&c->rates);
  tk_json_free(&c->json);
}

void catalog_add(catalog *catalog, tk_str id, tk_str name, tk_str unit) {
  tk_buf lower = {0};
  tk_buf_str(&lower, id);
  for (size_t i = 0; i < lower.len; i++)
    if (lower.data[i] >= 'A' && lower.data[i] <= 'Z') lower.data[i] += 32;
  uint32_t before = catalog->ids.count;
  uint32_t at = tk_intern(&catalog->ids, tk_buf_view(&lower));
  tk_buf_free(&lower);
  if (catalog->ids.count > before) {
    if ((at & (at + 1)) == 0) {
      /* Grown to a power of two: room for twice as many. */
      size_t cap = (size_t)(at + 1) * 2;
      catalog->names = tk_realloc(catalog->names, cap * sizeof *catalog->names);
      catalog->units = tk_realloc(catalog->units, cap * sizeof *catalog->units);
    }
  } else {
    /* A second entry for the same id: the last one wins, as a HashMap's collect. */
    free((void *)catalog->names[at].ptr);
    free((void *)catalog->units[at].ptr);
  }
  char *n = tk_alloc(name.len + 1), *u = tk_alloc(unit.len + 1);
  if (name.len) memcpy(n, name.ptr, name.len);
  if (unit.len) memcpy(u, unit.ptr, unit.len);
  catalog->names[at] = (tk_str){n, name.len};
  catalog->units[at] = (tk_str){u, unit.len};
}

void catalog_free(catalog *catalog) {
  for (uint32_t i = 0; i < catalog->ids.count; i++) {
    free((void *)catalog->names[i].ptr);
    free((void *)catalog->units[i].ptr);
  }
  free(catalog->names);
  free(catalog->units);
  tk_interner_free(&catalog->ids);
}

static size_t key_hash(int64_t day, uint32_t g, uint32_t s, uint32_t m) {
  uint64_t h = (uint64_t)day * 0x9E3779B97F4A7C15u;
  h ^= ((uint64_t)g << 40) ^ ((uint64_t)s << 20) ^ m;
  h *= 0xBF58476D1CE4E5B9u;
  return (size_t)(h ^ (h >> 31));
}

static void slots_grow(chargeback *cb) {
  size_t size = cb->slots ? (cb->slot_mask + 1) * 2 : 1024;
  free(cb->slots);
  cb->slots = calloc(size, sizeof *cb->slots);
  if (!cb->slots) abort();
  cb->slot_mask = size - 1;
  for (size_t r = 0; r < cb->rows_len; r++) {
    const chargeback_row *row = &cb->rows[r];
    size_t i = key_hash(row->day, row->group, row->subscription, row->meter) & cb->slot_mask;
    while (cb->slots[i]) i = (i + 1) & cb->slot_mask;
    cb->slots[i] = (uint32_t)r + 1;
  }
}

/* Adds a quantity to its row, made on first use with 0.0 + quantity. */
static void add_quantity(chargeback *cb, int64_t day, uint32_t g, uint32_t s, uint32_t m,
                         double quantity) {
  if (!cb->slots || (cb->rows_len + 1) * 2 > cb->slot_mask + 1) slots_grow(cb);
  size_t i = key_hash(day, g, s, m) & cb->slot_mask;
  for (;; i = (i + 1) & cb->slot_mask) {
    uint32_t slot = cb->slots[i];
    if (!slot) break;
    chargeback_row *row = &cb->rows[slot - 1];
    if (row->day == day && row->group == g && row->subscription == s && row->meter == m) {
      row->quantity += quantity;
      return;
    }
  }
  if (cb->rows_len == cb->rows_cap) {
    cb->rows_cap = cb->rows_cap ? cb->rows_cap * 2 : 256;
    cb->rows = tk_realloc(cb->rows, cb->rows_cap * sizeof *cb->rows);
  }
  cb->rows[cb->rows_len] = (chargeback_row){day, g, s, m, 0.0 + quantity};
  cb->slots[i] = (uint32_t)++cb->rows_len;
}

void chargeback_add(chargeback *cb, const columns *batch, tk_str group_by_tag) {
  /* Each batch string used as a key, interned on first use. */
  uint32_t *global = tk_alloc(batch->strings_len * sizeof *global);
  for (size_t i = 0; i < batch->strings_len; i++) global[i] = UINT32_MAX;
#define ID_OF(local)                                                                    \
  (global[local] != UINT32_MAX ? global[local]                                          \
                               : (global[local] = tk_intern(&cb->names, batch->strings[local])))
  uint32_t unallocated = tk_intern(&cb->names, tk_cstr(UNALLOCATED));
  uint32_t *groups = tk_alloc(batch->tag_sets_len * sizeof *groups);
  for (size_t t = 0; t < batch->tag_sets_len; t++) {
    groups[t] = unallocated;
    for (size_t p = 0; p < batch->tag_set_len[t]; p++) {
      uint32_t k = batch->tag_pairs[t][2 * p], v = batch->tag_pairs[t][2 * p + 1];
      if (tk_str_eq(batch->strings[k], group_by_tag)) {
        groups[t] = ID_OF(v);
        break;
      }
    }
  }
  for (size_t r = 0; r < batch->rows; r++) {
    int64_t day = tk_div_floor(batch->usage_start[r], 86400);
    uint32_t s = ID_OF(batch->subscription_id[r]);
    uint32_t m = ID_OF(batch->meter_id[r]);
    add_quantity(cb, day, groups[batch->tags[r]], s, m, batch->quantity[r]);
  }
#undef ID_OF
  cb->rows_read += batch->rows;
  free(groups);
  free(global);
}

/* qsort has no context argument: the names being compared. */
static const tk_str *sorting_names;

static int by_key(const void *pa, const void *pb) {
  const chargeback_row *a = pa, *b = pb;
  if (a->day != b->day) return a->day < b->day ? -1 : 1;
  int order = tk_str_cmp(sorting_names[a->group], sorting_names[b->group]);
  if (!order) order = tk_str_cmp(sorting_names[a->subscription], sorting_names[b->subscription]);
  if (!order) order = tk_str_cmp(sorting_names[a->meter], sorting_names[b->meter]);
  return order;
}

/* Rows are unique by key: the subscription first, then the whole key, is
 * the stable sort by subscription of the rows sorted by key. */
static int by_subscription(const void *pa, const void *pb) {
  const chargeback_row *a = pa, *b = pb;
  int order = tk_str_cmp(sorting_names[a->subscription], sorting_names[b->subscription]);
  return order ? order : by_key(pa, pb);
}

/* The rows sorted (a copy: the table keeps its own order). */
static chargeback_row *sorted_rows(const chargeback *cb, int (*order)(const void *, const void *)) {
  chargeback_row *rows = tk_alloc(cb->rows_len * sizeof *rows);
  if (cb->rows_len) memcpy(rows, cb->rows, cb->rows_len * sizeof *rows);
  sorting_names = cb->names.names;
  qsort(rows, cb->rows_len, sizeof *rows, order);
  return rows;
}

/* Appends one output row; returns whether its meter has a rate (one without
 * is rated at 0). */
static bool write_row(tk_buf *piece, const chargeback *cb, const config *config,
                      const catalog *catalog, const chargeback_row *row) {
  const tk_str *names = cb->names.names;
  tk_str meter = names[row->meter];
  const double *rated = tk_rates_find(&config->rates, meter);
  double rate = rated ? *rated : 0.0;
  tk_buf lower = {0};
  tk_buf_str(&lower, meter);
  for (size_t i = 0; i < lower.len; i++)
    if (lower.data[i] >= 'A' && lower.data[i] <= 'Z') lower.data[i] += 32;
  uint32_t at = tk_interned(&catalog->ids, tk_buf_view(&lower));
  tk_buf_free(&lower);
  tk_str none = {"", 0};
  tk_iso_date(piece, row->day);
  tk_buf_char(piece, ',');
  tk_csv_field(piece, names[row->group]);
  tk_buf_char(piece, ',');
  tk_csv_field(piece, names[row->subscription]);
  tk_buf_char(piece, ',');
  tk_csv_field(piece, meter);
  tk_buf_char(piece, ',');
  tk_csv_field(piece, at == UINT32_MAX ? none : catalog->names[at]);
  tk_buf_char(piece, ',');
  tk_csv_field(piece, at == UINT32_MAX ? none : catalog->units[at]);
  tk_buf_char(piece, ',');
  tk_fixed6(piece, row->quantity);
  tk_buf_char(piece, ',');
  tk_fixed6(piece, rate);
  tk_buf_char(piece, ',');
  tk_fixed6(piece, row->quantity * rate);
  tk_buf_char(piece, ',');
  tk_buf_str(piece, config->currency);
  tk_buf_char(piece, '\n');
  return rated != NULL;
}

bool chargeback_render(chargeback *cb, const config *config, const catalog *catalog,
                       piece_writer write, void *context, tk_interner *unrated) {
  chargeback_row *rows = sorted_rows(cb, by_key);
  tk_buf piece = {0};
  tk_buf_reserve(&piece, PIECE_BYTES + 1024);
  tk_buf_puts(&piece, HEADER);
  bool ok = true;
  for (size_t r = 0; r < cb->rows_len && ok; r++) {
    if (!write_row(&piece, cb, config, catalog, &rows[r]))
      tk_intern(unrated, cb->names.names[rows[r].meter]);
    if (piece.len >= PIECE_BYTES) {
      ok = write(context, NULL, tk_buf_view(&piece));
      tk_buf_clear(&piece);
    }
  }
  if (ok && piece.len) ok = write(context, NULL, tk_buf_view(&piece));
  tk_buf_free(&piece);
  free(rows);
  return ok;
}

bool chargeback_render_per_subscription(chargeback *cb, const config *config,
                                        const catalog *catalog, piece_writer write,
                                        void *context) {
  chargeback_row *rows = sorted_rows(cb, by_subscription);
  tk_buf piece = {0};
  bool ok = true;
  const tk_str *current = NULL;
  for (size_t r = 0; r < cb->rows_len && ok; r++) {
    const tk_str *subscription = &cb->names.names[rows[r].subscription];
    if (current != subscription) {
      if (current) {
        ok = write(context, current, tk_buf_view(&piece));
        tk_buf_clear(&piece);
        if (!ok) break;
      }
      current = subscription;
      tk_buf_puts(&piece, HEADER);
    }
    write_row(&piece, cb, config, catalog, &rows[r]);
    if (piece.len >= PIECE_BYTES) {
      ok = write(context, subscription, tk_buf_view(&piece));
      tk_buf_clear(&piece);
    }
  }
  if (ok && current && piece.len) ok = write(context, current, tk_buf_view(&piece));
  tk_buf_free(&piece);
  free(rows);
  return ok;
}

void chargeback_free(chargeback *cb) {
  tk_interner_free(&cb->names);
  free(cb->rows);
  free(cb->slots);
  *cb = (chargeback){0};
}
