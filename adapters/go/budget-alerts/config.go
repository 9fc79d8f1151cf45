package export_tally_billing_adapter

import (
	"tally.example/kit"
)

// config is the installation's `[config]` table.
type config struct {
	currency        string
	groupByTag      string             // "": budgets per subscription
	rates           map[string]float64 // by lower-case meter id
	budgets         map[string]float64 // by holder (lower-case subscription id, or tag value)
	defaultBudget   *float64           // budgets."*": every holder not named
	quotas          map[string]float64 // by lower-case meter id
	perSubscription bool
}

var configFields = []kit.Field{
	{Name: "currency", Kind: kit.String, Required: true},
	{Name: "rates", Kind: kit.NumberMap},
	{Name: "budgets", Kind: kit.NumberMap},
	{Name: "quotas", Kind: kit.NumberMap},
	{Name: "group_by_tag", Kind: kit.String},
	{Name: "per_subscription", Kind: kit.Bool},
}

// parseConfig reads and checks a config; its error says what to fix.
func parseConfig(text string) (*config, error) {
	fields, err := kit.ReadConfig(text, configFields, "Config")
	if err != nil {
		return nil, err
	}
	c := &config{
		currency:        fields.String("currency"),
		groupByTag:      fields.String("group_by_tag"),
		perSubscription: fields.Bool("per_subscription"),
		budgets:         map[string]float64{},
	}
	if err := kit.CheckCurrency(c.currency); err != nil {
		return nil, err
	}
	if fields.Has("group_by_tag") && kit.TrimRustWhitespace(c.groupByTag) == "" {
		return nil, kit.Refuse("group_by_tag must not be empty (leave it out for budgets per subscription)")
	}
	if c.perSubscription && c.groupByTag != "" {
		return nil, kit.Refuse("per_subscription needs budgets per subscription: leave out group_by_tag")
	}
	rates, budgets, quotas := fields.Numbers("rates"), fields.Numbers("budgets"), fields.Numbers("quotas")
	if err := kit.CheckRates(rates); err != nil {
		return nil, err
	}
	for _, e := range budgets {
		if e.Value < 0 {
			return nil, kit.Refuse("the budget of '%s' must be a non-negative amount, not %s", e.Key, kit.RustDisplay(e.Value))
		}
	}
	for _, e := range quotas {
		if e.Value < 0 {
			return nil, kit.Refuse("the quota of meter '%s' must be a non-negative quantity, not %s", e.Key, kit.RustDisplay(e.Value))
		}
	}
	if err := kit.CheckTwice(quotas, "[quotas]", "meter"); err != nil {
		return nil, err
	}
	if len(budgets) == 0 && len(quotas) == 0 {
		return nil, kit.Refuse("no budgets and no quotas: nothing to check (give [budgets], [quotas] or both)")
	}
	if len(budgets) > 0 && len(rates) == 0 {
		return nil, kit.Refuse("budgets need rates (the price of each meter): without them every cost is 0")
	}
	if c.groupByTag == "" {
		// Subscription ids compare ignoring case, as the host compares them.
		if err := kit.CheckTwice(budgets, "[budgets]", "subscription"); err != nil {
			return nil, err
		}
	}
	c.rates = kit.ByMeter(rates)
	c.quotas = kit.ByMeter(quotas)
	for _, e := range budgets {
		switch {
		case e.Key == "*":
			value := e.Value
			c.defaultBudget = &value
		case c.groupByTag == "":
			c.budgets[kit.ASCIILower(e.Key)] = e.Value
		default:
			c.budgets[e.Key] = e.Value
		}
	}
	return c, nil
}

// budget is a holder's budget, if it has one.
func (c *config) budget(holder string) (float64, bool) {
	key := holder
	if c.groupByTag == "" {
		key = kit.ASCIILower(holder)
	}
	if budget, ok := c.budgets[key]; ok {
		return budget, true
	}
	if c.defaultBudget != nil {
		return *c.defaultBudget, true
	}
	return 0, false
}
