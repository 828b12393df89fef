package messages

import "time"

// isoLayout is JavaScript's Date#toISOString: UTC, milliseconds, "Z".
const isoLayout = "2006-01-02T15:04:05.000Z"

// ISOTime formats t as JavaScript's toISOString() does.
func ISOTime(t time.Time) string {
	return t.UTC().Format(isoLayout)
}

// ParseISOTime reads a toISOString() timestamp.
func ParseISOTime(s string) (time.Time, error) {
	return time.Parse(isoLayout, s)
}
