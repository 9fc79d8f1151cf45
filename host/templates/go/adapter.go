// Package export_tally_billing_adapter is {{name}}: a tally billing adapter.
// It sums the usage of each meter over the export window, prices it with
// an optional rate card and writes `summary.csv`.
//
// Config (the installation's `[config]` table, handed over as JSON):
//
//	currency = "EUR"
//	[rates]                      # price per unit; meters without one cost 0
//	"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//
// The contract is wit/billing-adapter.wit: start there. ./build.sh writes
// its Go bindings beside this folder (`tally adapter bindings --lang go`):
// a package per interface (tally_billing_usage, …), whose functions return
// witTypes.Result and witTypes.Option values.
package export_tally_billing_adapter

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	adapter "wit_component/tally_billing_adapter"
	logging "wit_component/tally_billing_log"
	output "wit_component/tally_billing_output"
	usage "wit_component/tally_billing_usage"

	witRuntime "go.bytecodealliance.org/pkg/wit/runtime"
	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

const document = "summary.csv"

// config is the adapter's configuration.
type config struct {
	Currency string             `json:"currency"`
	Rates    map[string]float64 `json:"rates"`
}

// parseConfig parses and checks a configuration; the error says what to fix.
func parseConfig(text string) (*config, error) {
	decoder := json.NewDecoder(strings.NewReader(text))
	decoder.DisallowUnknownFields()
	var c config
	if err := decoder.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %v", err)
	}
	if len(c.Currency) != 3 || strings.Trim(c.Currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return nil, fmt.Errorf("config: currency '%s' is not an ISO 4217 code", c.Currency)
	}
	rates := make(map[string]float64, len(c.Rates))
	for meter, rate := range c.Rates {
		if rate < 0 {
			return nil, fmt.Errorf("config: the rate of '%s' must be a non-negative number, not %v", meter, rate)
		}
		rates[strings.ToLower(meter)] = rate // meter ids compare ignoring case
	}
	c.Rates = rates
	return &c, nil
}

// Describe is what the adapter is.
func Describe() adapter.Description {
	return adapter.Description{Name: "{{name}}", Version: "0.1.0", Produces: []string{document}}
}

// ValidateConfig checks a configuration before it is installed.
func ValidateConfig(config string) witTypes.Result[witTypes.Unit, string] {
	if _, err := parseConfig(config); err != nil {
		return witTypes.Err[witTypes.Unit](err.Error())
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

// Export sums and prices the window's usage per meter.
func Export(request adapter.ExportRequest, configText string) witTypes.Result[adapter.Summary, adapter.ExportError] {
	fail := witTypes.Err[adapter.Summary, adapter.ExportError]
	cfg, err := parseConfig(configText)
	if err != nil {
		return fail(adapter.MakeExportErrorInvalidConfig(err.Error()))
	}
	queried := usage.Query(request.Window, request.Granularity, witTypes.None[[]string]())
	if queried.IsErr() {
		return fail(adapter.MakeExportErrorTransient("query refused: " + queryError(queried.Err())))
	}
	cursor := queried.Ok()
	// Usage arrives in column batches; strings are indexes into batch.Strings.
	quantities := map[string]float64{}
	rowsRead := uint64(0)
	for next := cursor.Next(); next.IsSome(); next = cursor.Next() {
		batch := next.Some()
		for row, quantity := range batch.Quantity {
			meter := batch.Strings[batch.MeterId[row]] // in the catalog's spelling
			quantities[meter] += quantity
		}
		rowsRead += uint64(len(batch.Quantity))
		// Go's automatic garbage collection is off in a component (a
		// collection inside the host's allocation would trap): this lets the
		// batch go and collects when the heap has doubled.
		witRuntime.Collect()
	}
	cursor.Drop()

	catalog := map[string]usage.Meter{}
	for _, m := range usage.Meters() {
		catalog[m.Id] = m
	}
	meters := make([]string, 0, len(quantities))
	for meter := range quantities {
		meters = append(meters, meter)
	}
	sort.Strings(meters)
	var csv strings.Builder
	csv.WriteString("meter_id,meter_name,unit,quantity,rate,cost,currency\n")
	for _, meter := range meters {
		quantity, rate := quantities[meter], cfg.Rates[strings.ToLower(meter)]
		fmt.Fprintf(&csv, "%s,%s,%s,%.6f,%s,%.6f,%s\n", meter, csvField(catalog[meter].Name),
			csvField(catalog[meter].Unit), quantity, strconv.FormatFloat(rate, 'f', -1, 64), quantity*rate, cfg.Currency)
	}
	if written := output.Append(document, "text/csv", []byte(csv.String())); written.IsErr() {
		return fail(adapter.MakeExportErrorPermanent("writing " + document + ": " + outputError(written.Err())))
	}
	logging.Write(logging.LevelInfo, fmt.Sprintf("%d usage rows summed into %d meters", rowsRead, len(meters)))
	return witTypes.Ok[adapter.Summary, adapter.ExportError](adapter.Summary{
		RowsRead:    rowsRead,
		RowsWritten: uint64(len(meters)),
		Documents:   []string{document},
	})
}

// csvField quotes a CSV field that holds a comma, a quote or a line break.
func csvField(value string) string {
	if strings.ContainsAny(value, ",\"\r\n") {
		return `"` + strings.ReplaceAll(value, `"`, `""`) + `"`
	}
	return value
}

// queryError says why the host refused a query.
func queryError(e usage.QueryError) string {
	switch e.Tag() {
	case usage.QueryErrorInvalidWindow:
		return "invalid window: " + e.InvalidWindow()
	case usage.QueryErrorOutOfScope:
		return "out of scope: " + e.OutOfScope()
	default:
		return "usage unavailable: " + e.Unavailable()
	}
}

// outputError says why the host refused a write.
func outputError(e output.OutputError) string {
	switch e.Tag() {
	case output.OutputErrorLimitReached:
		return fmt.Sprintf("limit reached (%d)", e.LimitReached())
	case output.OutputErrorInvalidName:
		return "invalid name: " + e.InvalidName()
	default:
		return "out of scope: " + e.OutOfScope()
	}
}
