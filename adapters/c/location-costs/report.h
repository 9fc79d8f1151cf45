/*
 * The location-costs report, free of the component bindings: usage summed
 * per location and meter over the export window, priced by a rate card.
 *
 * Locations are compared ignoring ASCII case and spaces ("West Europe" and
 * "westeurope" are one) and written in lower case without spaces; usage
 * without a location is reported under "unknown". Meter ids are the
 * catalog's spelling (the host resolves the case a provider reported).
 */
#ifndef LOCATION_COSTS_REPORT_H
#define LOCATION_COSTS_REPORT_H

#include "tally_kit.h"

/* What to do with usage of a meter that has no rate. */
typedef enum { UNRATED_ZERO, UNRATED_FAIL } unrated_policy;

/* The installation's `[config]` table. */
typedef struct {
  tk_str currency;
  tk_rates rates;
  unrated_policy unrated;
  tk_json json; /* owns the strings above */
} report_config;

/* Parses and checks a config (JSON); on failure `error` says what to fix
 * ("config: …"). Free with report_config_free either way. */
bool report_config_parse(report_config *config, const char *text, size_t len, tk_buf *error);
void report_config_free(report_config *config);

/* One line: a location's usage of a meter. */
typedef struct {
  uint32_t location, meter; /* interned names */
  double quantity;
} report_line;

/* Quantities summed per location and meter. */
typedef struct {
  tk_interner names;
  report_line *lines;
  size_t lines_len, lines_cap;
  uint32_t *slots; /* open addressing over lines: index + 1, 0 for empty */
  size_t slot_mask;
  uint64_t rows_read;
} report;

/* The id of a location as a batch spells it (normalized). */
uint32_t report_location(report *report, tk_str location);
/* The id of a meter as a batch spells it. */
uint32_t report_meter(report *report, tk_str meter);
/* Adds one usage row, by the ids above. */
void report_add(report *report, uint32_t location, uint32_t meter, double quantity);
void report_free(report *report);

/* A meter's name and unit from the catalog (empty when it has none). */
typedef struct {
  tk_str name, unit;
} meter_info;
typedef meter_info (*meter_lookup)(void *context, tk_str meter);

/* The two documents, whole:
 * - `costs`: location,meter_id,meter_name,unit,quantity,rate,cost,currency,
 *   one line per location and meter, ordered by location and meter id;
 * - `totals`: location,cost,currency,share_percent, one line per location,
 *   the most expensive first (then by location).
 * Numbers are the shortest that read back exactly (quantity, rate and cost
 * unrounded; share to 2 decimals). Meters without a rate are priced at 0
 * and added to `unrated`. Returns the total cost. */
double report_render(report *report, const report_config *config, meter_lookup lookup,
                     void *context, tk_buf *costs, tk_buf *totals, tk_interner *unrated);

#endif
