package jsonscan

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrTooManyValues is Decode's answer to text with more values than it
// was allowed.
var ErrTooManyValues = errors.New("jsonscan: too many values")

// Decode decodes the JSON text b as json.Unmarshal does into an any:
// objects as map[string]any (the last of a repeated name wins), arrays as
// []any, numbers as float64, strings unescaped with invalid UTF-8 and lone
// surrogates replaced by U+FFFD. It fails wherever json.Unmarshal does:
// malformed text, nesting past encoding/json's limit, a number out of
// float64's range; and with ErrTooManyValues past maxValues values
// (scalars, arrays and objects; 0 for no limit).
//
// One pass, reading strings eight bytes at a time: encoding/json
// validates the whole text with its byte-at-a-time scanner before decoding
// it again, about 100 MB/s, so a 10 MB image held a server's poller for
// 0.1 s. The limit is for what a peer sends: each value costs tens of
// bytes decoded, so 20 MB of `[1,1,…]` made 380 MB of live heap.
func Decode(b []byte, maxValues int) (any, error) {
	d := decoder{b: b, left: maxValues}
	if maxValues <= 0 {
		d.left = math.MaxInt
	}
	v, end := d.value(skipSpace(b, 0), 0)
	switch {
	case d.left < 0:
		return nil, ErrTooManyValues
	case end < 0 || skipSpace(b, end) != len(b):
		return nil, ErrSyntax
	case d.err != nil:
		return nil, d.err
	}
	return v, nil
}

type decoder struct {
	b    []byte
	left int   // values still allowed; below zero once past the limit
	err  error // a number out of range: the text may still be malformed later
}

// value decodes the value at b[i]; the index past it, or -1.
func (d *decoder) value(i, depth int) (any, int) {
	b := d.b
	if d.left--; d.left < 0 || i >= len(b) {
		return nil, -1
	}
	switch c := b[i]; {
	case c == '"':
		return d.str(i)
	case c == '{':
		return d.object(i, depth+1)
	case c == '[':
		return d.array(i, depth+1)
	case c == '-' || isDigit(c):
		end := number(b, i)
		if end < 0 {
			return nil, -1
		}
		f, err := strconv.ParseFloat(string(b[i:end]), 64)
		if err != nil && d.err == nil {
			d.err = err
		}
		return f, end
	case c == 't':
		return true, literal(b, i, "true")
	case c == 'f':
		return false, literal(b, i, "false")
	case c == 'n':
		return nil, literal(b, i, "null")
	}
	return nil, -1
}

func (d *decoder) array(i, depth int) (any, int) {
	b := d.b
	if depth > maxDepth {
		return nil, -1
	}
	a := []any{}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return a, i + 1
	}
	for {
		v, end := d.value(i, depth)
		if end < 0 {
			return nil, -1
		}
		a = append(a, v)
		var more bool
		if i, more = next(b, end, ']'); i < 0 || !more {
			return a, i
		}
	}
}

func (d *decoder) object(i, depth int) (any, int) {
	b := d.b
	if depth > maxDepth {
		return nil, -1
	}
	m := map[string]any{}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, -1
		}
		key, kend := d.str(i)
		if kend < 0 {
			return nil, -1
		}
		if i = skipSpace(b, kend); i >= len(b) || b[i] != ':' {
			return nil, -1
		}
		v, end := d.value(skipSpace(b, i+1), depth)
		if end < 0 {
			return nil, -1
		}
		m[key] = v
		var more bool
		if i, more = next(b, end, '}'); i < 0 || !more {
			return m, i
		}
	}
}

// next reads what follows an element ending at b[end]: a comma (more:
// the next element's index) or close (the index past it), else -1.
func next(b []byte, end int, close byte) (i int, more bool) {
	i = skipSpace(b, end)
	switch {
	case i >= len(b):
		return -1, false
	case b[i] == close:
		return i + 1, false
	case b[i] == ',':
		return skipSpace(b, i+1), true
	}
	return -1, false
}

// str decodes the string at b[i]; the index past it, or -1.
func (d *decoder) str(i int) (string, int) {
	end, plain := scanString(d.b, i)
	switch {
	case end < 0:
		return "", -1
	case plain:
		return string(d.b[i+1 : end-1]), end
	}
	return unquoteValid(d.b[i:end]), end
}

// unquoteValid decodes a string token that stringEnd has accepted.
func unquoteValid(raw []byte) string {
	s := raw[1 : len(raw)-1]
	i := plainRun(s, 0) // a checked string holds no quote or control byte
	if i == len(s) {
		return string(s)
	}
	if bytes.IndexByte(s[i:], '\\') < 0 && utf8.Valid(s[i:]) {
		return string(s)
	}
	out := make([]byte, i, len(s)+8)
	copy(out, s[:i])
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\':
			switch e := s[i+1]; e {
			case 'b':
				out, i = append(out, '\b'), i+2
			case 'f':
				out, i = append(out, '\f'), i+2
			case 'n':
				out, i = append(out, '\n'), i+2
			case 'r':
				out, i = append(out, '\r'), i+2
			case 't':
				out, i = append(out, '\t'), i+2
			case 'u':
				r := hex4(s[i+2 : i+6])
				i += 6
				if utf16.IsSurrogate(r) {
					// A pair decodes to one character; anything else
					// is a lone surrogate, replaced.
					if r2, ok := escapedU(s[i:]); ok {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out, i = utf8.AppendRune(out, dec), i+6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default: // '"', '\\', '/'
				out, i = append(out, e), i+2
			}
		case c < utf8.RuneSelf:
			out, i = append(out, c), i+1
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, s[i:i+n]...)
			}
			i += n
		}
	}
	return string(out)
}

// escapedU reads a \uXXXX escape at the start of s.
func escapedU(s []byte) (rune, bool) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return 0, false
	}
	return hex4(s[2:6]), true
}

// hex4 reads four hex digits that stringEnd has checked.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
