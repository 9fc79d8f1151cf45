// Package export_tally_billing_adapter is budget-alerts-go: who went over
// their budget or a usage quota in an export window, by how much, and when.
//
// Config (the installation's `[config]` table):
//
//	currency = "EUR"                # ISO 4217, the budgets' currency
//	group_by_tag = "cost-center"    # optional: budgets per value of this tag (rows
//	                                # without it: "unallocated"); default: per subscription
//	per_subscription = true         # optional: also one CSV per subscription over a limit,
//	                                # owned by it (budgets per subscription only)
//	[rates]                         # price per unit, by meter id (case ignored); others cost 0
//	"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//	[budgets]                       # spend allowed per window, by subscription id (or tag value)
//	"sub-a" = 50.0
//	"*" = 10.0                      # every other subscription
//	[quotas]                        # quantity allowed per window of a meter, for each holder
//	"F271A8A388C44D93956A063E1D2FA80B" = 24
//
// A budget or quota applies to each export window: with daily windows a
// daily budget, with monthly windows a monthly one. Writes
// `budget-alerts.csv` (the header alone when nobody went over): one line per
// limit exceeded — the holder, `budget` or `quota`, the meter, the unit (the
// currency for a budget), allowed, used, over by (also in percent of what
// was allowed) and the start of the usage bucket (UTC hour or day) in which
// the running total went over. With `per_subscription`, each subscription
// over a limit also gets `budget-alerts-<subscription>.csv`, its own lines,
// through `append-for` (its tenants see it when the installation
// publishes).
//
// Built by adapters/go/build.sh into target/adapters/budget-alerts-go.wasm.
package export_tally_billing_adapter

import (
	"fmt"
	"strings"

	"tally.example/kit"
	adapter "wit_component/tally_billing_adapter"
	logging "wit_component/tally_billing_log"
	output "wit_component/tally_billing_output"
	usage "wit_component/tally_billing_usage"

	witRuntime "go.bytecodealliance.org/pkg/wit/runtime"
	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

const document = "budget-alerts.csv"

// perSubscription starts each subscription's document name.
const perSubscription = "budget-alerts-"

// Describe names the adapter and its documents.
func Describe() adapter.Description {
	return adapter.Description{
		Name:     "budget-alerts-go",
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

// Export checks the window's usage against the budgets and quotas.
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
	used := newUsageByBucket(cfg.groupByTag)
	for batch := cursor.Next(); batch.IsSome(); batch = cursor.Next() {
		b := batch.Some()
		used.add(&b)
		// Lets the batch go and collects garbage here, where it may (the
		// runtime's automatic collection is off: see witpkg's collect.go).
		witRuntime.Collect()
	}
	cursor.Drop()
	catalog := map[string]catalogEntry{}
	for _, m := range usage.Meters() {
		catalog[kit.ASCIILower(m.Id)] = catalogEntry{m.Name, m.Unit}
	}
	alerts, unrated := used.check(cfg)

	var csv strings.Builder
	csv.WriteString(header)
	for _, a := range alerts {
		writeAlert(&csv, cfg, catalog, a)
	}
	if err := outputError(output.Append(document, "text/csv", []byte(csv.String()))); err != nil {
		return fail(adapter.MakeExportErrorPermanent(err.Error()))
	}
	documents := []string{document}
	if cfg.perSubscription {
		for start := 0; start < len(alerts); {
			end := start
			var own strings.Builder
			own.WriteString(header)
			for ; end < len(alerts) && alerts[end].holder == alerts[start].holder; end++ {
				writeAlert(&own, cfg, catalog, alerts[end])
			}
			subscription := alerts[start].holder
			name := kit.DocumentName(perSubscription, subscription, ".csv")
			if err := outputError(output.AppendFor(subscription, name, "text/csv", []byte(own.String()))); err != nil {
				return fail(adapter.MakeExportErrorPermanent(err.Error()))
			}
			documents = append(documents, name)
			start = end
		}
	}
	for _, meter := range unrated {
		logging.Write(logging.LevelWarn, fmt.Sprintf("meter %s has no rate; its usage costs 0 against the budgets", meter))
	}
	holders := map[string]bool{}
	for _, a := range alerts {
		holders[a.holder] = true
	}
	logging.Write(logging.LevelInfo, fmt.Sprintf("%d usage rows read; limits exceeded: %d, by holders: %d", used.rowsRead, len(alerts), len(holders)))
	return witTypes.Ok[adapter.Summary, adapter.ExportError](adapter.Summary{
		RowsRead:    used.rowsRead,
		RowsWritten: uint64(len(alerts)),
		Documents:   documents,
	})
}
