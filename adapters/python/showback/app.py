"""Showback per subscription and calendar month: what each subscription
used of each meter and what it would cost at the rate card, for the people
who use it rather than for the ledger.

Config (the installation's `[config]` table):

    currency = "EUR"                 # ISO 4217
    [rates]                          # price per unit of each meter (ids ignore case)
    "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
    [subscription_names]             # optional: display names (default: the id)
    "7a110001-5e1f-4a7b-9c3d-0badcafe0001" = "Payments team"

Writes two documents for the window's usage, grouped by the calendar month
(UTC) of its *usage* time, so that usage reported late still lands in the
month it was used:

- `showback.csv`: one row per month, subscription and meter with quantity,
  rate and cost, unrounded. The host joins it over a date range
  (`/documents/showback.csv?from=…&to=…`); summing its rows by month and
  subscription gives each subscription's monthly showback.
- `showback.json`: the same lines nested by month and subscription, with
  each subscription's and each month's cost: the window's summary, e.g. for
  a portal or an e-mail.

Meters without a rate are shown at a rate of 0 and named in the log and in
`unrated_meters`.

Built by `adapters/python/build.sh` with componentize-py into
`target/adapters/showback-py.wasm`; the transform is in `monthly.py`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.adapter import (
    Description,
    ExportError_InvalidConfig,
    ExportError_Permanent,
    ExportError_Transient,
    Summary,
)
from wit_world.imports import log, output, usage

from monthly import Config, Showback, render_csv, render_json
from tally_kit import ConfigError, ascii_lower, debug_variant

CSV = "showback.csv"
JSON = "showback.json"
VERSION = "0.1.0"


class Adapter(exports.Adapter):
    """The `adapter` interface of the `billing-adapter` world."""

    def describe(self):
        return Description(name="showback-py", version=VERSION, produces=[CSV, JSON])

    def validate_config(self, config):
        try:
            Config.parse(config)
        except ConfigError as e:
            raise Err(str(e))

    def export(self, request, config):
        """Reads the window's usage batch by batch, then writes both documents."""
        try:
            config = Config.parse(config)
        except ConfigError as e:
            raise Err(ExportError_InvalidConfig(str(e)))
        try:
            cursor = usage.query(request.window, request.granularity, None)
        except Err as e:
            raise Err(ExportError_Transient(debug_variant("QueryError", e.value)))
        showback = Showback()
        with cursor:
            while (batch := cursor.next()) is not None:
                showback.add(batch)
        catalog = {ascii_lower(m.id): (m.name, m.category, m.unit) for m in usage.meters()}
        lines, unrated = showback.lines(config, catalog)
        for meter in unrated:
            log.write(log.Level.WARN, f"meter {meter} has no rate in the rate card; shown at 0")
        documents = [
            (CSV, "text/csv", render_csv(lines, config.currency)),
            (JSON, "application/json", render_json(lines, config, request, unrated)),
        ]
        for name, content_type, text in documents:
            try:
                output.append(name, content_type, text.encode())
            except Err as e:
                raise Err(ExportError_Permanent(debug_variant("OutputError", e.value)))
        log.write(
            log.Level.INFO,
            f"{showback.rows_read} usage rows summed into {len(lines)} showback lines",
        )
        return Summary(rows_read=showback.rows_read, rows_written=len(lines), documents=[CSV, JSON])
