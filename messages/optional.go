// Package messages is Switchboard's vocabulary: the wire payloads of the
// contract (with its JSON names) and the messages that actors exchange.
package messages

import (
	"encoding/json"
	"strconv"
)

// Str is a string field that may be absent. The contract forwards a field
// only when the sender set it, so "absent" and "" must stay distinct.
type Str struct {
	V   string
	Set bool
}

// S returns a present string field.
func S(v string) Str { return Str{V: v, Set: true} }

// IsZero lets `json:",omitzero"` drop an absent field.
func (s Str) IsZero() bool { return !s.Set }

// MarshalJSON writes the string value.
func (s Str) MarshalJSON() ([]byte, error) { return appendJSONString(nil, s.V), nil }

// UnmarshalJSON marks the field present.
func (s *Str) UnmarshalJSON(b []byte) error {
	s.Set = true
	return json.Unmarshal(b, &s.V)
}

// Or returns s when present, else o: JavaScript's `a || b` for strings,
// where an empty string also falls through.
func (s Str) Or(o Str) Str {
	if s.Set && s.V != "" {
		return s
	}
	return o
}

// Num is a numeric field that may be absent.
type Num struct {
	V   float64
	Set bool
}

// N returns a present number field.
func N(v float64) Num { return Num{V: v, Set: true} }

// IsZero lets `json:",omitzero"` drop an absent field.
func (n Num) IsZero() bool { return !n.Set }

// MarshalJSON writes the number as JavaScript's JSON.stringify would.
func (n Num) MarshalJSON() ([]byte, error) { return appendJSNumber(nil, n.V), nil }

// UnmarshalJSON marks the field present.
func (n *Num) UnmarshalJSON(b []byte) error {
	n.Set = true
	return json.Unmarshal(b, &n.V)
}

// ID is an identifier that CRMs send either as a number (the guide's
// operatorId) or as a string; it is forwarded in the form it came in.
type ID struct {
	Num  float64
	Str  string
	Kind IDKind
}

// IDKind says which form an ID has.
type IDKind uint8

// The forms of an ID.
const (
	IDAbsent IDKind = iota
	IDNumber
	IDString
)

// IsZero lets `json:",omitzero"` drop an absent id.
func (id ID) IsZero() bool { return id.Kind == IDAbsent }

// MarshalJSON writes the id in its original form.
func (id ID) MarshalJSON() ([]byte, error) {
	switch id.Kind {
	case IDNumber:
		return appendJSNumber(nil, id.Num), nil
	case IDString:
		return appendJSONString(nil, id.Str), nil
	}
	return []byte("null"), nil
}

// UnmarshalJSON accepts a number or a string.
func (id *ID) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		id.Kind = IDString
		return json.Unmarshal(b, &id.Str)
	}
	id.Kind = IDNumber
	return json.Unmarshal(b, &id.Num)
}

// String renders the id for logs and /stats.
func (id ID) String() string {
	switch id.Kind {
	case IDNumber:
		return string(appendJSNumber(nil, id.Num))
	case IDString:
		return id.Str
	}
	return ""
}

// appendJSNumber formats f as JavaScript's Number#toString does for the
// values JSON can carry: integers without a fraction, exponents from 1e21.
func appendJSNumber(b []byte, f float64) []byte {
	abs := f
	if abs < 0 {
		abs = -abs
	}
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		b = strconv.AppendFloat(b, f, 'e', -1, 64)
		// Go writes 1e+21 and 1e-07; JavaScript writes 1e+21 and 1e-7.
		for i := len(b) - 1; i > 0; i-- {
			if b[i] == 'e' {
				if i+3 < len(b) && b[i+2] == '0' {
					b = append(b[:i+2], b[i+3:]...)
				}
				break
			}
		}
		return b
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
