package export_tally_billing_adapter

// The budget and quota check itself: usage summed per holder (subscription
// or tag value), usage bucket and meter; then, bucket by bucket in usage
// time, the running cost against the holder's budget and the running
// quantity of each meter against its quota.

import (
	"sort"
	"strings"

	"tally.example/kit"
	usage "wit_component/tally_billing_usage"
)

// header is the CSV's first line.
const header = "holder,limit,meter_id,meter_name,unit,allowed,used,over_by,over_percent,exceeded_at\n"

// unallocated holds the usage of resources without the grouping tag.
const unallocated = "unallocated"

// bucketKey is a holder's usage of a meter in one usage bucket.
type bucketKey struct {
	holder string
	start  int64
	meter  string
}

// usageByBucket sums a window's usage per holder, bucket and meter.
type usageByBucket struct {
	groupByTag  string
	quantities  map[bucketKey]float64
	subscribers map[string]string // holder → its subscription (by subscription only)
	rowsRead    uint64
}

func newUsageByBucket(groupByTag string) *usageByBucket {
	return &usageByBucket{groupByTag: groupByTag, quantities: map[bucketKey]float64{}, subscribers: map[string]string{}}
}

// add sums a usage batch.
func (u *usageByBucket) add(batch *usage.UsageBatch) {
	strs := batch.Strings
	holders := make([]string, len(batch.TagSets))
	if u.groupByTag != "" {
		for i, set := range batch.TagSets {
			holders[i] = unallocated
			for _, pair := range set {
				if strs[pair.F0] == u.groupByTag {
					holders[i] = strs[pair.F1]
					break
				}
			}
		}
	}
	for i, quantity := range batch.Quantity {
		holder := strs[batch.SubscriptionId[i]]
		if u.groupByTag != "" {
			holder = holders[batch.Tags[i]]
		}
		key := bucketKey{holder: holder, start: batch.UsageStart[i], meter: strs[batch.MeterId[i]]}
		u.quantities[key] += quantity
	}
	u.rowsRead += uint64(len(batch.Quantity))
}

// alert is one limit a holder went over.
type alert struct {
	holder     string
	meter      string // "" for the budget
	allowed    float64
	used       float64
	exceededAt int64 // start of the bucket whose usage took the total over
}

// check compares each holder's usage with its budget and the quotas, and
// returns what went over, by holder (byte order), the budget before the
// quotas (by meter id), and the meters that had no rate.
func (u *usageByBucket) check(cfg *config) ([]alert, []string) {
	costs := map[string]map[int64]float64{}                 // holder → bucket → cost
	quantities := map[string]map[string]map[int64]float64{} // holder → lower-case meter → bucket → quantity
	spelling := map[string]string{}                         // lower-case meter → the catalog's spelling
	unrated := map[string]bool{}
	for _, key := range u.sortedKeys() {
		quantity := u.quantities[key]
		meter := kit.ASCIILower(key.meter)
		if _, ok := spelling[meter]; !ok {
			spelling[meter] = key.meter
		}
		if len(cfg.budgets) > 0 || cfg.defaultBudget != nil {
			rate, rated := cfg.rates[meter]
			if !rated {
				unrated[key.meter] = true
			}
			if costs[key.holder] == nil {
				costs[key.holder] = map[int64]float64{}
			}
			costs[key.holder][key.start] += quantity * rate
		}
		if _, limited := cfg.quotas[meter]; limited {
			if quantities[key.holder] == nil {
				quantities[key.holder] = map[string]map[int64]float64{}
			}
			if quantities[key.holder][meter] == nil {
				quantities[key.holder][meter] = map[int64]float64{}
			}
			quantities[key.holder][meter][key.start] += quantity
		}
	}
	// overrun walks buckets in usage time: the total used, and the first
	// bucket after which it was over allowed.
	overrun := func(buckets map[int64]float64, allowed float64) (float64, int64, bool) {
		starts := make([]int64, 0, len(buckets))
		for start := range buckets {
			starts = append(starts, start)
		}
		sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
		used, at, over := 0.0, int64(0), false
		for _, start := range starts {
			used += buckets[start]
			if !over && used > allowed {
				at, over = start, true
			}
		}
		return used, at, over
	}
	holders := map[string]bool{}
	for key := range u.quantities {
		holders[key.holder] = true
	}
	var alerts []alert
	for _, holder := range sortedSet(holders) {
		if allowed, ok := cfg.budget(holder); ok {
			if used, at, over := overrun(costs[holder], allowed); over {
				alerts = append(alerts, alert{holder, "", allowed, used, at})
			}
		}
		meters := make([]string, 0, len(quantities[holder]))
		for meter := range quantities[holder] {
			meters = append(meters, spelling[meter])
		}
		sort.Strings(meters)
		for _, meter := range meters {
			allowed := cfg.quotas[kit.ASCIILower(meter)]
			if used, at, over := overrun(quantities[holder][kit.ASCIILower(meter)], allowed); over {
				alerts = append(alerts, alert{holder, meter, allowed, used, at})
			}
		}
	}
	return alerts, sortedSet(unrated)
}

// sortedKeys is the keys in a fixed order, so that sums do not depend on
// the map's.
func (u *usageByBucket) sortedKeys() []bucketKey {
	keys := make([]bucketKey, 0, len(u.quantities))
	for key := range u.quantities {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.holder != b.holder {
			return a.holder < b.holder
		}
		if a.start != b.start {
			return a.start < b.start
		}
		return a.meter < b.meter
	})
	return keys
}

func sortedSet(set map[string]bool) []string {
	items := make([]string, 0, len(set))
	for item := range set {
		items = append(items, item)
	}
	sort.Strings(items)
	return items
}

// catalogEntry is a meter's name and unit.
type catalogEntry struct{ name, unit string }

// writeAlert appends one CSV line.
func writeAlert(out *strings.Builder, cfg *config, catalog map[string]catalogEntry, a alert) {
	kind, name, unit := "budget", "", cfg.currency
	if a.meter != "" {
		meter := catalog[kit.ASCIILower(a.meter)]
		kind, name, unit = "quota", meter.name, meter.unit
	}
	percent := ""
	if a.allowed > 0 {
		percent = kit.Fixed(100*(a.used-a.allowed)/a.allowed, 1)
	}
	for _, field := range []string{
		kit.CSVField(a.holder),
		kind,
		kit.CSVField(a.meter),
		kit.CSVField(name),
		kit.CSVField(unit),
		kit.Fixed6(a.allowed),
		kit.Fixed6(a.used),
		kit.Fixed6(a.used - a.allowed),
		percent,
	} {
		out.WriteString(field)
		out.WriteByte(',')
	}
	out.WriteString(kit.ISOTime(a.exceededAt))
	out.WriteByte('\n')
}
