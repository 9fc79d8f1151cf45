"""Chargeback CSV for Power BI, in Python: the `chargeback-csv` adapter's
twin, with the same config and the same `chargeback.csv`, byte for byte.

Config (the installation's `[config]` table, as for `chargeback-csv`):

    currency = "EUR"                 # ISO 4217
    group_by_tag = "cost-center"     # rows without the tag go to "unallocated"
    per_subscription = true          # optional (default false): also one CSV per subscription
    [rates]                          # price per unit of each meter (ids ignore case)
    "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025

Writes `chargeback.csv`: one row per usage day, group, subscription and
meter, with quantity, rate and cost. Meters without a rate are exported at a
rate of 0 and named once in the log, so nothing disappears silently.
With `per_subscription = true`, also `chargeback-<subscription>.csv` for
each subscription read (`append-for`), as the Rust adapter writes them.

Built by `adapters/python/build.sh` with componentize-py into
`target/adapters/chargeback-py.wasm`; the transform is in `rating.py`.
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

from rating import Chargeback, Config
from tally_kit import ConfigError, ascii_lower, debug_variant, document_name

DOCUMENT = "chargeback.csv"
PER_SUBSCRIPTION = "chargeback-"
VERSION = "0.1.0"


class Adapter(exports.Adapter):
    """The `adapter` interface of the `billing-adapter` world."""

    def describe(self):
        return Description(
            name="chargeback-py",
            version=VERSION,
            produces=[DOCUMENT, PER_SUBSCRIPTION + "{subscription}.csv"],
        )

    def validate_config(self, config):
        try:
            Config.parse(config)
        except ConfigError as e:
            raise Err(str(e))

    def export(self, request, config):
        """Reads the window's usage batch by batch, then writes the CSV at once."""
        try:
            config = Config.parse(config)
        except ConfigError as e:
            raise Err(ExportError_InvalidConfig(str(e)))
        try:
            cursor = usage.query(request.window, request.granularity, None)
        except Err as e:
            raise Err(ExportError_Transient(debug_variant("QueryError", e.value)))
        chargeback = Chargeback(config.group_by_tag)
        with cursor:
            while (batch := cursor.next()) is not None:
                chargeback.add(batch)
        catalog = {ascii_lower(m.id): (m.name, m.unit) for m in usage.meters()}
        csv, unrated = chargeback.render(config, catalog)
        for meter in unrated:
            log.write(log.Level.WARN, f"meter {meter} has no rate in the rate card; exported at 0")
        documents = [DOCUMENT]
        try:
            output.append(DOCUMENT, "text/csv", csv.encode())
            if config.per_subscription:
                for subscription, text in chargeback.render_per_subscription(config, catalog):
                    name = document_name(PER_SUBSCRIPTION, subscription, ".csv")
                    output.append_for(subscription, name, "text/csv", text.encode())
                    documents.append(name)
        except Err as e:
            raise Err(ExportError_Permanent(debug_variant("OutputError", e.value)))
        log.write(
            log.Level.INFO,
            f"{chargeback.rows_read} usage rows rated into {chargeback.rows()} chargeback rows",
        )
        return Summary(
            rows_read=chargeback.rows_read,
            rows_written=chargeback.rows(),
            documents=documents,
        )
