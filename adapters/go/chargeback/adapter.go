// Package export_tally_billing_adapter is chargeback-go: Chargeback CSV
// for Power BI, in Go, the `chargeback-csv` adapter's twin, with the same
// config and the same documents, byte for byte.
//
// Config (the installation's `[config]` table, as for `chargeback-csv`):
//
//	currency = "EUR"                 # ISO 4217
//	group_by_tag = "cost-center"     # rows without the tag go to "unallocated"
//	per_subscription = true          # optional (default false): also one CSV per subscription
//	[rates]                          # price per unit of each meter (ids ignore case)
//	"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//
// Writes `chargeback.csv`: one row per usage day, group, subscription and
// meter, with quantity, rate and cost. Meters without a rate are exported
// at a rate of 0 and named once in the log, so nothing disappears
// silently. With `per_subscription = true`, also
// `chargeback-<subscription>.csv` for each subscription read
// (`append-for`), as the Rust adapter writes them.
//
// Built by adapters/go/build.sh into target/adapters/chargeback-go.wasm;
// the transform is in rating.go.
package export_tally_billing_adapter

import (
	"fmt"

	"tally.example/kit"
	adapter "wit_component/tally_billing_adapter"
	logging "wit_component/tally_billing_log"
	output "wit_component/tally_billing_output"
	usage "wit_component/tally_billing_usage"

	witRuntime "go.bytecodealliance.org/pkg/wit/runtime"
	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

const document = "chargeback.csv"

// perSubscription starts each subscription's document name.
const perSubscription = "chargeback-"

// Describe names the adapter and its documents.
func Describe() adapter.Description {
	return adapter.Description{
		Name:     "chargeback-go",
		Version:  "0.1.0",
		Produces: []string{document, perSubscription + "{subscription}.csv"},
	}
}

// ValidateConfig refuses a config that cannot work, saying why.
func ValidateConfig(config string) witTypes.Result[witTypes.Unit, string] {
	if _, err := parseConfig(config); err != nil {
		return witTypes.Err[witTypes.Unit](err.Error())
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

// Export rates the window's usage and writes the CSV (and, asked, one per
// subscription).
func Export(request adapter.ExportRequest, configText string) witTypes.Result[adapter.Summary, adapter.ExportError] {
	fail := witTypes.Err[adapter.Summary, adapter.ExportError]
	cfg, err := parseConfig(configText)
	if err != nil {
		return fail(adapter.MakeExportErrorInvalidConfig(err.Error()))
	}
	queried := usage.Query(request.Window, request.Granularity, witTypes.None[[]string]())
	if queried.IsErr() {
		return fail(adapter.MakeExportErrorTransient(queryErrorDebug(queried.Err())))
	}
	cursor := queried.Ok()
	defer cursor.Drop()
	rated := newChargeback(cfg.groupByTag)
	for batch := cursor.Next(); batch.IsSome(); batch = cursor.Next() {
		b := batch.Some()
		rated.add(&b)
		// Lets the batch go and collects garbage here, where it may (the
		// runtime's automatic collection is off: see witpkg's collect.go).
		witRuntime.Collect()
	}
	catalog := map[string]catalogEntry{}
	for _, m := range usage.Meters() {
		catalog[kit.ASCIILower(m.Id)] = catalogEntry{m.Name, m.Unit}
	}
	unrated, err := rated.render(cfg, catalog, func(piece []byte) error {
		return outputError(output.Append(document, "text/csv", piece))
	})
	if err != nil {
		return fail(adapter.MakeExportErrorPermanent(err.Error()))
	}
	documents := []string{document}
	if cfg.perSubscription {
		err := rated.renderPerSubscription(cfg, catalog, func(subscription string, piece []byte) error {
			name := kit.DocumentName(perSubscription, subscription, ".csv")
			if err := outputError(output.AppendFor(subscription, name, "text/csv", piece)); err != nil {
				return err
			}
			if documents[len(documents)-1] != name {
				documents = append(documents, name)
			}
			return nil
		})
		if err != nil {
			return fail(adapter.MakeExportErrorPermanent(err.Error()))
		}
	}
	for _, meter := range unrated {
		logging.Write(logging.LevelWarn, fmt.Sprintf("meter %s has no rate in the rate card; exported at 0", meter))
	}
	logging.Write(logging.LevelInfo, fmt.Sprintf("%d usage rows rated into %d chargeback rows", rated.rowsRead, len(rated.quantities)))
	return witTypes.Ok[adapter.Summary, adapter.ExportError](adapter.Summary{
		RowsRead:    rated.rowsRead,
		RowsWritten: uint64(len(rated.quantities)),
		Documents:   documents,
	})
}
