package kit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// ConfigError is a config that cannot work; its text is the reason shown to
// the operator.
type ConfigError struct{ Reason string }

func (e *ConfigError) Error() string { return e.Reason }

// Refuse makes a ConfigError of "config: " and the formatted reason.
func Refuse(format string, args ...any) error {
	return &ConfigError{Reason: "config: " + fmt.Sprintf(format, args...)}
}

// Kind is the type a config field must have.
type Kind int

const (
	// String is a JSON string (serde's `String`).
	String Kind = iota
	// Bool is a JSON boolean.
	Bool
	// Number is a JSON number, as a float64 (serde's `f64`, which takes integers).
	Number
	// NumberMap is an object of numbers (serde's `HashMap<String, f64>`).
	NumberMap
	// StringMap is an object of strings.
	StringMap
)

// Field is a field of a config object.
type Field struct {
	Name     string
	Kind     Kind
	Required bool
}

// Entry is one key of a map, in document order.
type Entry[T any] struct {
	Key   string
	Value T
}

// Config is a parsed config: each field present, by name, as a string,
// bool, float64, []Entry[float64] or []Entry[string].
type Config map[string]any

// ReadConfig reads a config object from JSON the way a Rust adapter's
// `#[serde(deny_unknown_fields)]` struct named `structName` does, and
// refuses what it refuses in its words (serde's "at line 1 column N" left
// out): the first unknown, duplicate or mistyped field in document order,
// then the first missing one in declaration order. A map that repeats a key
// keeps its last value (at the place of its first).
func ReadConfig(text string, fields []Field, structName string) (Config, error) {
	decoder := json.NewDecoder(strings.NewReader(text))
	decoder.UseNumber()
	value, err := readValue(decoder)
	if err != nil {
		return nil, err
	}
	if _, err := decoder.Token(); err != io.EOF {
		return nil, Refuse("trailing characters")
	}
	config := Config{}
	switch v := value.(type) {
	case object:
		for _, pair := range v {
			field, known := fieldNamed(fields, pair.Key)
			if !known {
				return nil, Refuse("unknown field `%s`, %s", pair.Key, expectedOneOf(fields))
			}
			if _, seen := config[pair.Key]; seen {
				return nil, Refuse("duplicate field `%s`", pair.Key)
			}
			if config[pair.Key], err = convert(field.Kind, pair.Value); err != nil {
				return nil, err
			}
		}
	case array:
		// serde reads a struct from a sequence too: its fields in order.
		for i, item := range v {
			if i == len(fields) {
				return nil, Refuse("trailing characters")
			}
			if config[fields[i].Name], err = convert(fields[i].Kind, item); err != nil {
				return nil, err
			}
		}
		for i := len(v); i < len(fields); i++ {
			if fields[i].Required {
				return nil, Refuse("invalid length %d, expected struct %s with %d elements", len(v), structName, len(fields))
			}
		}
	default:
		return nil, Refuse("invalid type: %s, expected struct %s", unexpected(value), structName)
	}
	for _, field := range fields {
		if _, present := config[field.Name]; field.Required && !present {
			return nil, Refuse("missing field `%s`", field.Name)
		}
	}
	return config, nil
}

// String is the string field name, or "" when absent.
func (c Config) String(name string) string { s, _ := c[name].(string); return s }

// Bool is the boolean field name, or false when absent.
func (c Config) Bool(name string) bool { b, _ := c[name].(bool); return b }

// Numbers is the number map name, in document order (nil when absent).
func (c Config) Numbers(name string) []Entry[float64] {
	m, _ := c[name].([]Entry[float64])
	return m
}

// Strings is the string map name, in document order (nil when absent).
func (c Config) Strings(name string) []Entry[string] {
	m, _ := c[name].([]Entry[string])
	return m
}

// Has is whether the config gave field name.
func (c Config) Has(name string) bool { _, ok := c[name]; return ok }

// object is a JSON object as its pairs in document order; array a JSON array.
type (
	object []Entry[any]
	array  []any
)

// integer is a JSON number without fraction or exponent that fits 64 bits
// (serde_json reads those as u64/i64, and says "integer" of them).
type integer struct{ text string }

func readValue(decoder *json.Decoder) (any, error) {
	token, err := decoder.Token()
	if err != nil {
		return nil, syntax(err)
	}
	switch t := token.(type) {
	case json.Delim:
		switch t {
		case '{':
			var pairs object
			for decoder.More() {
				key, err := decoder.Token()
				if err != nil {
					return nil, syntax(err)
				}
				value, err := readValue(decoder)
				if err != nil {
					return nil, err
				}
				pairs = append(pairs, Entry[any]{key.(string), value})
			}
			_, err := decoder.Token()
			return pairs, syntax(err)
		case '[':
			items := array{}
			for decoder.More() {
				value, err := readValue(decoder)
				if err != nil {
					return nil, err
				}
				items = append(items, value)
			}
			_, err := decoder.Token()
			return items, syntax(err)
		}
		return nil, Refuse("expected value")
	case json.Number:
		text := t.String()
		if !strings.ContainsAny(text, ".eE") {
			if _, err := strconv.ParseInt(text, 10, 64); err == nil {
				return integer{text}, nil
			}
			if _, err := strconv.ParseUint(text, 10, 64); err == nil {
				return integer{text}, nil
			}
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, Refuse("number out of range")
		}
		return f, nil
	default:
		return t, nil // string, bool or nil
	}
}

func syntax(err error) error {
	if err == nil {
		return nil
	}
	var config *ConfigError
	if errors.As(err, &config) {
		return err
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return Refuse("EOF while parsing a value")
	}
	return Refuse("%s", strings.TrimPrefix(err.Error(), "json: "))
}

func convert(kind Kind, value any) (any, error) {
	switch kind {
	case String:
		if s, ok := value.(string); ok {
			return s, nil
		}
		return nil, Refuse("invalid type: %s, expected a string", unexpected(value))
	case Bool:
		if b, ok := value.(bool); ok {
			return b, nil
		}
		return nil, Refuse("invalid type: %s, expected a boolean", unexpected(value))
	case Number:
		return number(value)
	case NumberMap, StringMap:
		pairs, ok := value.(object)
		if !ok {
			return nil, Refuse("invalid type: %s, expected a map", unexpected(value))
		}
		item := String
		if kind == NumberMap {
			item = Number
		}
		var numbers []Entry[float64]
		var strs []Entry[string]
		at := map[string]int{}
		for _, pair := range pairs {
			v, err := convert(item, pair.Value)
			if err != nil {
				return nil, err
			}
			i, seen := at[pair.Key]
			if !seen {
				i = len(at)
				at[pair.Key] = i
			}
			if kind == NumberMap {
				if seen {
					numbers[i].Value = v.(float64)
				} else {
					numbers = append(numbers, Entry[float64]{pair.Key, v.(float64)})
				}
			} else if seen {
				strs[i].Value = v.(string)
			} else {
				strs = append(strs, Entry[string]{pair.Key, v.(string)})
			}
		}
		if kind == NumberMap {
			return numbers, nil
		}
		return strs, nil
	}
	panic("unknown kind")
}

func number(value any) (any, error) {
	switch v := value.(type) {
	case float64:
		return v, nil
	case integer:
		f, _ := strconv.ParseFloat(v.text, 64)
		return f, nil
	}
	return nil, Refuse("invalid type: %s, expected f64", unexpected(value))
}

func fieldNamed(fields []Field, name string) (Field, bool) {
	for _, f := range fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// expectedOneOf is serde's list of a struct's fields.
func expectedOneOf(fields []Field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = "`" + f.Name + "`"
	}
	switch len(names) {
	case 0:
		return "there are no fields"
	case 1:
		return "expected " + names[0]
	case 2:
		return "expected " + names[0] + " or " + names[1]
	}
	return "expected one of " + strings.Join(names, ", ")
}

// unexpected is serde's `Unexpected` wording of a JSON value.
func unexpected(value any) string {
	switch v := value.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("boolean `%t`", v)
	case integer:
		return "integer `" + v.text + "`"
	case float64:
		return "floating point `" + SerdeFloat(v) + "`"
	case string:
		return "string " + RustDebugString(v)
	case object:
		return "map"
	}
	return "sequence"
}

// CheckCurrency refuses a currency that is not three ASCII capitals.
func CheckCurrency(code string) error {
	ok := len(code) == 3
	for i := 0; ok && i < 3; i++ {
		ok = 'A' <= code[i] && code[i] <= 'Z'
	}
	if !ok {
		return Refuse("currency '%s' is not an ISO 4217 code", code)
	}
	return nil
}

// CheckRates refuses a rate card (meter id → price per unit) with a
// negative price, or one that names a meter twice in different cases.
func CheckRates(card []Entry[float64]) error {
	for _, e := range card {
		if math.IsInf(e.Value, 0) || math.IsNaN(e.Value) || e.Value < 0 {
			return Refuse("the rate of meter '%s' must be a non-negative number, not %s", e.Key, RustDisplay(e.Value))
		}
	}
	return CheckTwice(card, "the rate card", "meter")
}

// CheckTwice refuses a map whose keys repeat an id (a noun's) in another case:
// the first such pair in byte order, as Rust's sorted check finds it.
func CheckTwice[T any](card []Entry[T], what, noun string) error {
	ids := make([]string, len(card))
	for i, e := range card {
		ids[i] = e.Key
	}
	sort.Strings(ids) // byte order, as Rust sorts strings
	for i, a := range ids {
		for _, b := range ids[i+1:] {
			if ASCIILower(a) == ASCIILower(b) {
				return Refuse("%s names %s '%s' twice ('%s' and '%s'; ids ignore case)", what, noun, a, a, b)
			}
		}
	}
	return nil
}

// ByMeter is a lookup of meter id (any ASCII case) → value; the first
// spelling wins.
func ByMeter[T any](card []Entry[T]) map[string]T {
	lookup := make(map[string]T, len(card))
	for _, e := range card {
		key := ASCIILower(e.Key)
		if _, seen := lookup[key]; !seen {
			lookup[key] = e.Value
		}
	}
	return lookup
}
