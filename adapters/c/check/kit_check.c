/* Prints, for each f64 read from stdin as 16 hex digits of its bits, one
 * line: Rust's `{}`, serde_json's float and `{:.6}` as the kit writes them,
 * separated by spaces. tests/c_adapters.rs compares them with Rust's own. */
#include <stdio.h>
#include <string.h>

#include "tally_kit.h"

int main(void) {
  unsigned long long bits;
  tk_buf line = {0};
  while (scanf("%16llx", &bits) == 1) {
    double x;
    memcpy(&x, &bits, sizeof x);
    tk_buf_clear(&line);
    tk_rust_display(&line, x);
    tk_buf_char(&line, ' ');
    tk_serde_float(&line, x);
    tk_buf_char(&line, ' ');
    tk_fixed6(&line, x);
    puts(line.data);
  }
  tk_buf_free(&line);
  return 0;
}
