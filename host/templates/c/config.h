/*
 * The adapter's configuration: the installation's `[config]` table, handed
 * over as JSON.
 *
 *     currency = "EUR"
 *     [rates]                      # price per unit; meters without one cost 0
 *     "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char id[129]; /* lower case: meter ids compare ignoring case */
  double price;
} rate;

typedef struct {
  char currency[4];
  rate *rates;
  size_t rates_len;
} config;

/* Parses and checks a configuration; on failure, `error` (of `error_size`
 * bytes) says what to fix. Free with config_free either way. */
bool config_parse(config *config, const char *json, size_t len, char *error, size_t error_size);
/* The price of a meter (its id in any case), 0 when the rate card has none. */
double config_rate(const config *config, const char *meter, size_t len);
void config_free(config *config);

#endif
