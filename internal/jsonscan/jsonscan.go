// Package jsonscan walks JSON text in place: the elements of an array, the
// fields of an object, a string's contents, without decoding into maps or
// through reflection and without allocating. It accepts exactly the text
// that encoding/json accepts (json.Valid), so a reader built on it refuses
// what encoding/json would refuse; values are handed back as sub-slices of
// the input, which the caller must not modify while it uses them.
//
// The Socket.IO client reads every event through it, and the load tool the
// few payloads it checks: at tens of thousands of events a second,
// encoding/json's validation pass, its reflection and the copies it makes
// were most of the load tool's CPU.
package jsonscan

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// ErrSyntax is what every malformed input gives.
var ErrSyntax = errors.New("jsonscan: invalid JSON")

// maxDepth matches encoding/json's nesting limit.
const maxDepth = 10000

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// Valid reports whether b is one JSON value, with optional whitespace
// around it.
func Valid(b []byte) bool {
	end := value(b, skipSpace(b, 0), 0)
	return end >= 0 && skipSpace(b, end) == len(b)
}

// value returns the index just past the value that starts at b[i], or -1
// if there is none there.
func value(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return stringEnd(b, i)
	case c == '{':
		return object(b, i, depth+1)
	case c == '[':
		return array(b, i, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		return number(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	}
	return -1
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// stringEnd returns the index past the string whose opening quote is
// b[i]: control characters must be escaped, and escapes must be JSON's.
func stringEnd(b []byte, i int) int {
	end, _ := scanString(b, i)
	return end
}

// scanString is stringEnd that also tells whether the string is plain:
// ASCII without escapes, its contents as they are.
func scanString(b []byte, i int) (end int, plain bool) {
	plain = true
	for i++; i < len(b); i++ {
		var high bool
		if i, high = stringRun(b, i); high {
			plain = false
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, plain
		case c < 0x20:
			return -1, false
		case c == '\\':
			plain = false
			i++
			if i >= len(b) {
				return -1, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i <= 4 {
					return -1, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return -1, false
					}
				}
				i += 4
			default:
				return -1, false
			}
		}
	}
	return -1, false
}

// plainRun returns the index of the first byte from b[i] on that a string
// cannot hold as it is (a quote, a backslash, a control character) or
// that is not ASCII, or len(b): eight bytes at a time, since images make
// strings of megabytes.
func plainRun(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if special(x)|x&highs != 0 {
			break
		}
	}
	for ; i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' && b[i] < utf8.RuneSelf; i++ {
	}
	return i
}

// stringRun is plainRun that goes on past bytes that are not ASCII (text
// in most languages), telling whether it passed any.
func stringRun(b []byte, i int) (int, bool) {
	var high uint64
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if special(x) != 0 {
			break
		}
		high |= x
	}
	for ; i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\'; i++ {
		high |= uint64(b[i])
	}
	return i, high&highs != 0
}

const ones, highs = 0x0101010101010101, 0x8080808080808080

// special sets the high bit of x's bytes that are under 0x20, a quote or
// a backslash, with no false negative (a false positive only follows a
// true one: the byte loops after it find the first).
func special(x uint64) uint64 {
	q, bs := x^(ones*'"'), x^(ones*'\\')
	return (x-ones*0x20)&^x&highs | (q-ones)&^q&highs | (bs-ones)&^bs&highs
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number returns the index past a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && isDigit(b[i]):
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i
}

func array(b []byte, i, depth int) int {
	if depth > maxDepth {
		return -1
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		if i = value(b, i, depth); i < 0 {
			return -1
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ']':
			return i + 1
		case ',':
			i = skipSpace(b, i+1)
		default:
			return -1
		}
	}
}

func object(b []byte, i, depth int) int {
	if depth > maxDepth {
		return -1
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		if i = stringEnd(b, i); i < 0 {
			return -1
		}
		if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
			return -1
		}
		if i = value(b, skipSpace(b, i+1), depth); i < 0 {
			return -1
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '}':
			return i + 1
		case ',':
			i = skipSpace(b, i+1)
		default:
			return -1
		}
	}
}

// Array walks the elements of a JSON array:
//
//	it := jsonscan.NewArray(b)
//	for it.Next() { use(it.Value()) }
//	if it.Err() != nil { ... }
//
// Err is nil only if b was one well-formed array (whitespace around it
// allowed) and every element was read.
type Array struct {
	b     []byte
	i     int
	n     int
	val   []byte
	err   error
	ended bool
}

// NewArray starts a walk of b's elements.
func NewArray(b []byte) Array {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return Array{err: ErrSyntax, ended: true}
	}
	return Array{b: b, i: skipSpace(b, i+1)}
}

// Next moves to the next element; false at the end of the array or at an
// error.
func (a *Array) Next() bool {
	if a.ended {
		return false
	}
	b, i := a.b, a.i
	if i < len(b) && b[i] == ']' && a.n == 0 {
		return a.finish(i + 1)
	}
	if a.n > 0 {
		switch {
		case i < len(b) && b[i] == ']':
			return a.finish(i + 1)
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		default:
			return a.fail()
		}
	}
	end := value(b, i, 1)
	if end < 0 {
		return a.fail()
	}
	a.val, a.i, a.n = b[i:end], skipSpace(b, end), a.n+1
	return true
}

func (a *Array) finish(i int) bool {
	a.ended, a.val = true, nil
	if skipSpace(a.b, i) != len(a.b) {
		a.err = ErrSyntax
	}
	return false
}

func (a *Array) fail() bool {
	a.ended, a.val, a.err = true, nil, ErrSyntax
	return false
}

// Value is the current element's JSON text.
func (a *Array) Value() []byte { return a.val }

// Err reports a malformed input, once Next has returned false.
func (a *Array) Err() error { return a.err }

// Object walks the fields of a JSON object in order, as Array does its
// elements: Key is the field's name as JSON text (quotes included; see
// KeyIs and Unquote), Value its value's.
type Object struct {
	b        []byte
	i        int
	n        int
	key, val []byte
	err      error
	ended    bool
}

// NewObject starts a walk of b's fields.
func NewObject(b []byte) Object {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return Object{err: ErrSyntax, ended: true}
	}
	return Object{b: b, i: skipSpace(b, i+1)}
}

// Next moves to the next field; false at the end of the object or at an
// error.
func (o *Object) Next() bool {
	if o.ended {
		return false
	}
	b, i := o.b, o.i
	if i < len(b) && b[i] == '}' && o.n == 0 {
		return o.finish(i + 1)
	}
	if o.n > 0 {
		switch {
		case i < len(b) && b[i] == '}':
			return o.finish(i + 1)
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		default:
			return o.fail()
		}
	}
	if i >= len(b) || b[i] != '"' {
		return o.fail()
	}
	kend := stringEnd(b, i)
	if kend < 0 {
		return o.fail()
	}
	v := skipSpace(b, kend)
	if v >= len(b) || b[v] != ':' {
		return o.fail()
	}
	v = skipSpace(b, v+1)
	end := value(b, v, 1)
	if end < 0 {
		return o.fail()
	}
	o.key, o.val, o.i, o.n = b[i:kend], b[v:end], skipSpace(b, end), o.n+1
	return true
}

func (o *Object) finish(i int) bool {
	o.ended, o.key, o.val = true, nil, nil
	if skipSpace(o.b, i) != len(o.b) {
		o.err = ErrSyntax
	}
	return false
}

func (o *Object) fail() bool {
	o.ended, o.key, o.val, o.err = true, nil, nil, ErrSyntax
	return false
}

// Key is the current field's name as JSON text, quotes included.
func (o *Object) Key() []byte { return o.key }

// KeyIs reports whether the current field's name is exactly name (an
// escaped name is unescaped first). Unlike encoding/json's field matching
// it is case-sensitive.
func (o *Object) KeyIs(name string) bool { return Is(o.key, name) }

// Value is the current field's value as JSON text.
func (o *Object) Value() []byte { return o.val }

// Err reports a malformed input, once Next has returned false.
func (o *Object) Err() error { return o.err }

// Plain returns the contents of the JSON string raw, quotes removed, when
// it needs no unescaping and is valid UTF-8 (so it reads the same as
// encoding/json would decode it); ok is false otherwise, and for anything
// that is not a string.
func Plain(raw []byte) (s []byte, ok bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	s = raw[1 : len(raw)-1]
	ascii := true
	for _, c := range s {
		if c == '\\' || c == '"' || c < 0x20 {
			return nil, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(s) {
		return nil, false
	}
	return s, true
}

// Unquote decodes the JSON string raw as encoding/json decodes it into a
// string (escapes resolved, invalid UTF-8 replaced); ok is false for
// anything that is not a well-formed string.
func Unquote(raw []byte) (string, bool) {
	if s, ok := Plain(raw); ok {
		return string(s), true
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	end, _ := scanString(raw, 0)
	if end < 0 || skipSpace(raw, end) != len(raw) {
		return "", false
	}
	return unquoteValid(raw[:end]), true
}

// Is reports whether the JSON string raw decodes to exactly s.
func Is(raw []byte, s string) bool {
	if p, ok := Plain(raw); ok {
		return string(p) == s
	}
	u, ok := Unquote(raw)
	return ok && u == s
}
