package kit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// RustDisplay is Rust's `format!("{}", x)` of a finite float64: the
// shortest digits that read back as x, positional (never an exponent), no
// trailing ".0". Go's shortest digits (strconv) round an exact tie to even;
// Rust's round it away from zero, so a tie is moved up here.
func RustDisplay(x float64) string {
	if x == 0 {
		if math.Signbit(x) {
			return "-0"
		}
		return "0"
	}
	sign := ""
	if x < 0 {
		sign, x = "-", -x
	}
	digits, exp := significand(strconv.FormatFloat(x, 'e', -1, 64))
	// The exact value's digits: a tie is the shortest digits followed by a 5.
	exact, exactExp := significand(strconv.FormatFloat(x, 'e', 800, 64))
	if exactExp == exp && len(exact) == len(digits)+1 && exact[len(digits)] == '5' &&
		exact[:len(digits)] == digits {
		up, upExp := increment(digits, exp)
		if parsed, err := strconv.ParseFloat(positional(up, upExp), 64); err == nil && parsed == x {
			digits, exp = up, upExp
		}
	}
	return sign + positional(digits, exp)
}

// significand splits "d.ddde±x" into its digits without trailing zeros and
// the decimal exponent of the first digit.
func significand(text string) (string, int) {
	mantissa, exponent, _ := strings.Cut(text, "e")
	exp, _ := strconv.Atoi(exponent)
	digits := strings.TrimRight(strings.Replace(mantissa, ".", "", 1), "0")
	if digits == "" {
		digits = "0"
	}
	return digits, exp
}

// increment adds one unit in the last digit.
func increment(digits string, exp int) (string, int) {
	b := []byte(digits)
	i := len(b) - 1
	for ; i >= 0 && b[i] == '9'; i-- {
		b[i] = '0'
	}
	if i < 0 {
		return strings.TrimRight("1"+string(b), "0"), exp + 1
	}
	b[i]++
	return strings.TrimRight(string(b), "0"), exp
}

// positional writes digits × 10^(exp - len(digits) + 1) without an exponent.
func positional(digits string, exp int) string {
	switch {
	case exp >= len(digits)-1:
		return digits + strings.Repeat("0", exp-len(digits)+1)
	case exp >= 0:
		return digits[:exp+1] + "." + digits[exp+1:]
	default:
		return "0." + strings.Repeat("0", -exp-1) + digits
	}
}

// SerdeFloat is a float as serde_json words it in an error ("floating point
// `…`"): the shortest digits, positional from 1e-5 to below 1e16 with at
// least one decimal ("1.0"), else with an exponent ("1e+20", "-7.5e-9").
func SerdeFloat(x float64) string {
	if x == 0 {
		if math.Signbit(x) {
			return "-0.0"
		}
		return "0.0"
	}
	sign := ""
	if x < 0 {
		sign, x = "-", -x
	}
	digits, exp := significand(strconv.FormatFloat(x, 'e', -1, 64))
	if exp >= -5 && exp <= 15 {
		text := positional(digits, exp)
		if !strings.Contains(text, ".") {
			text += ".0"
		}
		return sign + text
	}
	text := digits[:1]
	if len(digits) > 1 {
		text += "." + digits[1:]
	}
	if exp > 0 {
		return sign + text + "e+" + strconv.Itoa(exp)
	}
	return sign + text + "e" + strconv.Itoa(exp)
}

// Fixed6 is Rust's `format!("{:.6}", x)`: six decimals, the exact binary
// value rounded half to even (as strconv does).
func Fixed6(x float64) string {
	return strconv.FormatFloat(x, 'f', 6, 64)
}

// Fixed is x with the given number of decimals, the exact binary value
// rounded half to even.
func Fixed(x float64, decimals int) string {
	return strconv.FormatFloat(x, 'f', decimals, 64)
}

// RustDebugString is Rust's `format!("{:?}", s)` of a string: quoted, with
// quotes, backslashes and control characters escaped.
func RustDebugString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case 0:
			b.WriteString(`\0`)
		default:
			if unicode.IsControl(r) {
				fmt.Fprintf(&b, `\u{%x}`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TrimRustWhitespace is Rust's `str::trim`: Unicode White_Space stripped
// from both ends (Go's unicode.IsSpace is the same set).
func TrimRustWhitespace(s string) string {
	return strings.TrimFunc(s, unicode.IsSpace)
}

// ASCIILower lower-cases ASCII letters only, as Rust's `to_ascii_lowercase`.
func ASCIILower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
