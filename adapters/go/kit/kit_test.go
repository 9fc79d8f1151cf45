package kit

import (
	"math"
	"strings"
	"testing"
)

func TestRustDisplay(t *testing.T) {
	for _, c := range []struct {
		x    float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "-0"},
		{-0.5, "-0.5"},
		{-1, "-1"},
		{1e-7, "0.0000001"},
		{1e21, "1000000000000000000000"},
		{0.1, "0.1"},
		// Exact ties of the shortest digits: Rust rounds them up, Go to even.
		{math.Float64frombits(0x3e60000000000000), "0.000000029802322387695313"},
		{math.Float64frombits(0xbe60000000000000), "-0.000000029802322387695313"},
		{math.Float64frombits(0x41ad411500b90000), "245402240.36132813"},
		{math.Float64frombits(0x43179085685d83c9), "1658206780088562.3"},
		{5e-324, "0." + strings.Repeat("0", 323) + "5"},
	} {
		if got := RustDisplay(c.x); got != c.want {
			t.Errorf("RustDisplay(%v) = %s, want %s", c.x, got, c.want)
		}
	}
}

func TestFixed6RoundsTiesToEven(t *testing.T) {
	if got := Fixed6(0.0078125); got != "0.007812" {
		t.Error(got)
	}
	if got := Fixed6(math.Copysign(0, -1)); got != "-0.000000" {
		t.Error(got)
	}
}

func TestConfigsAreRefusedInSerdesWords(t *testing.T) {
	fields := []Field{{"currency", String, true}, {"rates", NumberMap, true}, {"on", Bool, false}}
	for _, c := range []struct{ text, want string }{
		{`{"currency":7,"rates":{}}`, "config: invalid type: integer `7`, expected a string"},
		{`{"currency":1.5,"rates":{}}`, "config: invalid type: floating point `1.5`, expected a string"},
		{`{"currency":1e300,"rates":{}}`, "config: invalid type: floating point `1e+300`, expected a string"},
		{`{"currency":-7.5e-9,"rates":{}}`, "config: invalid type: floating point `-7.5e-9`, expected a string"},
		{`{"currency":0.00001234,"rates":{}}`, "config: invalid type: floating point `0.00001234`, expected a string"},
		{`{"currency":123.0,"rates":{}}`, "config: invalid type: floating point `123.0`, expected a string"},
		{`{"currency":1e16,"rates":{}}`, "config: invalid type: floating point `1e+16`, expected a string"},
		{`{"currency":"EUR","rates":{"m":"cheap"}}`, "config: invalid type: string \"cheap\", expected f64"},
		{`{"currency":"EUR","rates":[1]}`, "config: invalid type: sequence, expected a map"},
		{`{"currency":"EUR","rates":{},"on":"yes"}`, "config: invalid type: string \"yes\", expected a boolean"},
		{`{"currency":"EUR","rates":{},"x":1}`, "config: unknown field `x`, expected one of `currency`, `rates`, `on`"},
		{`{"currency":"EUR","currency":"USD","rates":{}}`, "config: duplicate field `currency`"},
		{`{"rates":{}}`, "config: missing field `currency`"},
		{`"EUR"`, "config: invalid type: string \"EUR\", expected struct Config"},
		{`null`, "config: invalid type: null, expected struct Config"},
		{`["EUR"]`, "config: invalid length 1, expected struct Config with 3 elements"},
		{`{"currency":"a\nb\u0001","rates":{"m":true}}`, "config: invalid type: boolean `true`, expected f64"},
		{`{"currency":"EUR","rates":{"m":1e400}}`, "config: number out of range"},
	} {
		_, err := ReadConfig(c.text, fields, "Config")
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %s", c.text, err, c.want)
		}
	}
	config, err := ReadConfig(`{"rates":{"b":1,"a":2,"b":3},"currency":"EUR"}`, fields, "Config")
	if err != nil {
		t.Fatal(err)
	}
	rates := config.Numbers("rates")
	if len(rates) != 2 || rates[0] != (Entry[float64]{"b", 3}) || rates[1] != (Entry[float64]{"a", 2}) {
		t.Error(rates)
	}
	if _, err := ReadConfig(`["EUR",{}]`, fields, "Config"); err != nil {
		t.Error(err)
	}
}

func TestRatesAndText(t *testing.T) {
	card := []Entry[float64]{{"ab", 1}, {"AB", 2}}
	want := "config: the rate card names meter 'AB' twice ('AB' and 'ab'; ids ignore case)"
	if err := CheckRates(card); err == nil || err.Error() != want {
		t.Error(err)
	}
	if err := CheckRates([]Entry[float64]{{"m", -0.5}}); err == nil ||
		err.Error() != "config: the rate of meter 'm' must be a non-negative number, not -0.5" {
		t.Error(err)
	}
	if got := RustDebugString("a\"b\\\n\x01é"); got != `"a\"b\\\n\u{1}é"` {
		t.Error(got)
	}
	if ISODate(0) != "1970-01-01" || ISODate(20_454) != "2026-01-01" || ISODate(-1) != "1969-12-31" {
		t.Error(ISODate(-1))
	}
	if ISOTime(1_793_491_200+3_661) != "2026-11-01T01:01:01Z" {
		t.Error(ISOTime(1_793_491_200 + 3_661))
	}
	if CSVField(`say "hi"`) != `"say ""hi"""` || CSVField("a,b") != `"a,b"` || CSVField("plain") != "plain" {
		t.Error("csv")
	}
	if DocumentName("statement-", `edge, "quoted"`, ".csv") != "statement-9495873879bc527f.csv" ||
		DocumentName("s-", "", ".csv") != "s-e3b0c44298fc1c14.csv" ||
		DocumentName("statement-", "Sub_1.a-B", ".html") != "statement-Sub_1.a-B.html" {
		t.Error("document names")
	}
	if TrimRustWhitespace(" \t\u3000x\u0085") != "x" {
		t.Error("trim")
	}
}
