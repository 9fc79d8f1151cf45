package kit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// CSVField is a CSV field, quoted (quotes doubled) when it holds a comma, a
// quote or a line break.
func CSVField(value string) string {
	if strings.ContainsAny(value, ",\"\n\r") {
		return `"` + strings.ReplaceAll(value, `"`, `""`) + `"`
	}
	return value
}

// FloorDiv is Rust's `i64::div_euclid` for a positive divisor.
func FloorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// CivilFromDays is (year, month, day) of a day number since 1970-01-01
// (Howard Hinnant's civil-from-days, as the Rust adapters compute it).
func CivilFromDays(days int64) (int64, int64, int64) {
	z := days + 719_468
	era := FloorDiv(z, 146_097)
	doe := z - era*146_097
	yoe := (doe - doe/1_460 + doe/36_524 - doe/146_096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := doy - (153*mp+2)/5 + 1
	month := mp + 3
	if mp >= 10 {
		month = mp - 9
	}
	year := yoe + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

// ISODate is `YYYY-MM-DD` of a day number since 1970-01-01.
func ISODate(days int64) string {
	y, m, d := CivilFromDays(days)
	return fmt.Sprintf("%04d-%02d-%02d", y, m, d)
}

// ISOTime is `YYYY-MM-DDTHH:MM:SSZ` of seconds since the Unix epoch.
func ISOTime(seconds int64) string {
	days := FloorDiv(seconds, 86_400)
	s := seconds - days*86_400
	return fmt.Sprintf("%sT%02d:%02d:%02dZ", ISODate(days), s/3600, s/60%60, s%60)
}

// MaxDocumentName is the longest document name the host takes.
const MaxDocumentName = 128

// DocumentName is the name of subscription's document:
// prefix+subscription+suffix when the id is 1 or more of `A-Z a-z 0-9 . _ -`
// and the name fits in 128 bytes; otherwise the id is replaced by the first
// 16 hex digits of the SHA-256 of its UTF-8 bytes (as the Rust adapters'
// kit names it).
func DocumentName(prefix, subscription, suffix string) string {
	plain := subscription != "" && len(prefix)+len(subscription)+len(suffix) <= MaxDocumentName
	for i := 0; plain && i < len(subscription); i++ {
		c := subscription[i]
		plain = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '-'
	}
	if plain {
		return prefix + subscription + suffix
	}
	digest := sha256.Sum256([]byte(subscription))
	return prefix + hex.EncodeToString(digest[:8]) + suffix
}
