package export_tally_billing_adapter

// The chargeback transform, a line-by-line mirror of
// adapters/chargeback-csv/src/rating.rs, so that both adapters write the
// same bytes for the same usage and config:
//   - rows are keyed by (usage day, group, subscription, meter) and each
//     key's quantity is summed in the order rows arrive (0 + q1 + q2 …, as
//     Rust's `or_default() += q`);
//   - rows are sorted by that key, strings byte by byte (Go's `<` on
//     strings is Rust's order of their UTF-8);
//   - numbers are printed with six decimals of the exact binary value,
//     ties to even (strconv, as Rust's `{:.6}`);
//   - meter ids compare ignoring ASCII case only, as `eq_ignore_ascii_case`.

import (
	"sort"
	"strings"

	"tally.example/kit"
	usage "wit_component/tally_billing_usage"
)

const header = "date,group,subscription_id,meter_id,meter_name,unit,quantity,rate,cost,currency\n"
const unallocated = "unallocated"

// pieceBytes is how much CSV is handed to the host at a time.
const pieceBytes = 64 * 1024

// config is the installation's `[config]` table.
type config struct {
	currency        string
	groupByTag      string
	rates           map[string]float64 // by lower-case meter id
	perSubscription bool
}

var configFields = []kit.Field{
	{Name: "currency", Kind: kit.String, Required: true},
	{Name: "group_by_tag", Kind: kit.String, Required: true},
	{Name: "rates", Kind: kit.NumberMap, Required: true},
	{Name: "per_subscription", Kind: kit.Bool},
}

// parseConfig reads and checks a config, refusing what chargeback-csv
// refuses with its reasons.
func parseConfig(text string) (*config, error) {
	fields, err := kit.ReadConfig(text, configFields, "Config")
	if err != nil {
		return nil, err
	}
	c := &config{
		currency:        fields.String("currency"),
		groupByTag:      fields.String("group_by_tag"),
		perSubscription: fields.Bool("per_subscription"),
	}
	if err := kit.CheckCurrency(c.currency); err != nil {
		return nil, err
	}
	if kit.TrimRustWhitespace(c.groupByTag) == "" {
		return nil, kit.Refuse("group_by_tag must not be empty")
	}
	if err := kit.CheckRates(fields.Numbers("rates")); err != nil {
		return nil, err
	}
	c.rates = kit.ByMeter(fields.Numbers("rates"))
	return c, nil
}

// rate is a meter's price per unit, and whether the rate card has it.
func (c *config) rate(meter string) (float64, bool) {
	rate, ok := c.rates[kit.ASCIILower(meter)]
	return rate, ok
}

// rowKey is an output row's key: usage day, group, subscription, meter.
type rowKey struct {
	day                        int64
	group, subscription, meter string
}

func (a rowKey) less(b rowKey) bool {
	if a.day != b.day {
		return a.day < b.day
	}
	if a.group != b.group {
		return a.group < b.group
	}
	if a.subscription != b.subscription {
		return a.subscription < b.subscription
	}
	return a.meter < b.meter
}

type row struct {
	key      rowKey
	quantity float64
}

// chargeback is the quantities summed per usage day, group, subscription
// and meter.
type chargeback struct {
	groupByTag string
	quantities map[rowKey]float64
	rowsRead   uint64
}

func newChargeback(groupByTag string) *chargeback {
	return &chargeback{groupByTag: groupByTag, quantities: map[rowKey]float64{}}
}

// add sums a usage batch.
func (c *chargeback) add(batch *usage.UsageBatch) {
	strs := batch.Strings
	// The group of each tag set: the value of its first group_by_tag pair.
	groups := make([]string, len(batch.TagSets))
	for i, set := range batch.TagSets {
		groups[i] = unallocated
		for _, pair := range set {
			if strs[pair.F0] == c.groupByTag {
				groups[i] = strs[pair.F1]
				break
			}
		}
	}
	for i, quantity := range batch.Quantity {
		key := rowKey{
			day:          kit.FloorDiv(batch.UsageStart[i], 86_400),
			group:        groups[batch.Tags[i]],
			subscription: strs[batch.SubscriptionId[i]],
			meter:        strs[batch.MeterId[i]],
		}
		c.quantities[key] += quantity
	}
	c.rowsRead += uint64(len(batch.Quantity))
}

// sortedRows is the output rows ordered by day, group, subscription, meter.
func (c *chargeback) sortedRows() []row {
	rows := make([]row, 0, len(c.quantities))
	for key, quantity := range c.quantities {
		rows = append(rows, row{key, quantity})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].key.less(rows[j].key) })
	return rows
}

// catalogEntry is a meter's name and unit.
type catalogEntry struct{ name, unit string }

// render hands the CSV to write in pieces of about pieceBytes; it returns
// the meters without a rate (exported at 0), sorted.
func (c *chargeback) render(cfg *config, catalog map[string]catalogEntry, write func([]byte) error) ([]string, error) {
	unrated := map[string]bool{}
	var piece strings.Builder
	piece.WriteString(header)
	for _, r := range c.sortedRows() {
		if !writeRow(&piece, cfg, catalog, r) {
			unrated[r.key.meter] = true
		}
		if piece.Len() >= pieceBytes {
			if err := write([]byte(piece.String())); err != nil {
				return nil, err
			}
			piece.Reset()
		}
	}
	if piece.Len() > 0 {
		if err := write([]byte(piece.String())); err != nil {
			return nil, err
		}
	}
	meters := make([]string, 0, len(unrated))
	for meter := range unrated {
		meters = append(meters, meter)
	}
	sort.Strings(meters)
	return meters, nil
}

// renderPerSubscription hands each subscription's own CSV (the header,
// then its rows of render, in the same order) to write, subscriptions in
// the byte order of their ids, in pieces of about pieceBytes.
func (c *chargeback) renderPerSubscription(cfg *config, catalog map[string]catalogEntry, write func(subscription string, piece []byte) error) error {
	rows := c.sortedRows()
	// Stable: each subscription's rows keep the order of the whole CSV.
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].key.subscription < rows[j].key.subscription })
	var piece strings.Builder
	current, started := "", false
	for _, r := range rows {
		if !started || r.key.subscription != current {
			if started {
				if err := write(current, []byte(piece.String())); err != nil {
					return err
				}
				piece.Reset()
			}
			current, started = r.key.subscription, true
			piece.WriteString(header)
		}
		writeRow(&piece, cfg, catalog, r)
		if piece.Len() >= pieceBytes {
			if err := write(current, []byte(piece.String())); err != nil {
				return err
			}
			piece.Reset()
		}
	}
	if started && piece.Len() > 0 {
		return write(current, []byte(piece.String()))
	}
	return nil
}

// writeRow appends one output row; it returns whether the meter has a rate
// (one without is rated at 0).
func writeRow(piece *strings.Builder, cfg *config, catalog map[string]catalogEntry, r row) bool {
	rate, rated := cfg.rate(r.key.meter)
	meter := catalog[kit.ASCIILower(r.key.meter)]
	for _, field := range []string{
		kit.ISODate(r.key.day),
		kit.CSVField(r.key.group),
		kit.CSVField(r.key.subscription),
		kit.CSVField(r.key.meter),
		kit.CSVField(meter.name),
		kit.CSVField(meter.unit),
		kit.Fixed6(r.quantity),
		kit.Fixed6(rate),
		kit.Fixed6(r.quantity * rate),
	} {
		piece.WriteString(field)
		piece.WriteByte(',')
	}
	piece.WriteString(cfg.currency)
	piece.WriteByte('\n')
	return rated
}
