package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

var samples = []string{
	`["incomingMessage",{"from":"abc","type":"text","message":"lt:1:2:3 xx","timestamp":"2026-12-03T07:00:00.000Z"},"1-2"]`,
	`[]`, ` [ ] `, `[1]`, `[1,]`, `[,1]`, `[1 2]`, `[`, `]`, `{}`, `{"a":1}`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{a:1}`,
	`"x"`, `"\u00e9\n\t\"\\\/"`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\x01\"", "\"\xff\"", `"é"`,
	`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-`, `1e`, `-1.25e-3`, `2.`,
	`true`, `tru`, `false`, `null`, `nul`, `nulls`, `[true,false,null]`,
	`[{"a":[1,{"b":"c"}]},"d"]`, `[1] x`, `[1]]`, ` {"a" : [ 1 , 2 ] } `, `{"a":1 "b":2}`,
	`["a","b","c","d","e"]`, `[[[]]]`, `[null,"1-0"]`, `{"ok":true,"error":{"code":"x"}}`, `{"ok":null}`,
	``, ` `, `[1,2`, `{"a":1`, "[\"\u2028\"]",
}

// Valid accepts exactly what encoding/json accepts.
func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, s := range samples {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", s, got, want)
		}
	}
	deep := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if !Valid([]byte(deep)) || Valid([]byte("["+deep+"]")) {
		t.Errorf("nesting: %d levels must pass and %d fail, as in encoding/json", maxDepth, maxDepth+1)
	}
}

// checkArray compares an Array walk with json.Unmarshal into raw elements.
func checkArray(t *testing.T, s string) {
	var want []json.RawMessage
	werr := json.Unmarshal([]byte(s), &want)
	if werr == nil && want == nil { // null decodes to a nil slice; it is no array
		werr = ErrSyntax
	}
	it := NewArray([]byte(s))
	var got []json.RawMessage
	for it.Next() {
		got = append(got, it.Value())
	}
	if (it.Err() != nil) != (werr != nil) {
		t.Fatalf("NewArray(%q): err %v, encoding/json %v", s, it.Err(), werr)
	}
	if werr != nil {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("NewArray(%q): %d elements, encoding/json %d", s, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("NewArray(%q)[%d] = %s, encoding/json %s", s, i, got[i], want[i])
		}
	}
}

// checkObject compares an Object walk with json.Unmarshal into a map.
func checkObject(t *testing.T, s string) {
	var want map[string]json.RawMessage
	werr := json.Unmarshal([]byte(s), &want)
	if werr == nil && want == nil {
		werr = ErrSyntax
	}
	it := NewObject([]byte(s))
	got := map[string]json.RawMessage{}
	for it.Next() {
		k, ok := Unquote(it.Key())
		if !ok {
			t.Fatalf("NewObject(%q): key %s does not unquote", s, it.Key())
		}
		if !it.KeyIs(k) {
			t.Fatalf("NewObject(%q): KeyIs(%q) false for its own key", s, k)
		}
		got[k] = it.Value()
	}
	if (it.Err() != nil) != (werr != nil) {
		t.Fatalf("NewObject(%q): err %v, encoding/json %v", s, it.Err(), werr)
	}
	if werr != nil {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("NewObject(%q): %d fields, encoding/json %d", s, len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("NewObject(%q)[%q] = %s, encoding/json %s", s, k, got[k], v)
		}
	}
}

func checkUnquote(t *testing.T, s string) {
	var want string
	werr := json.Unmarshal([]byte(s), &want)
	isString := len(s) > 0 && s[0] == '"'
	got, ok := Unquote([]byte(s))
	if ok != (werr == nil && isString) {
		t.Fatalf("Unquote(%q): ok %v, encoding/json err %v", s, ok, werr)
	}
	if ok && got != want {
		t.Fatalf("Unquote(%q) = %q, encoding/json %q", s, got, want)
	}
	if p, ok := Plain([]byte(s)); ok && string(p) != want {
		t.Fatalf("Plain(%q) = %q, encoding/json %q", s, p, want)
	}
}

func TestWalksMatchEncodingJSON(t *testing.T) {
	for _, s := range samples {
		checkArray(t, s)
		checkObject(t, s)
		checkUnquote(t, s)
	}
}

func TestWalkAllocatesNothing(t *testing.T) {
	b := []byte(samples[0])
	n := testing.AllocsPerRun(100, func() {
		it := NewArray(b)
		for it.Next() {
			if o := NewObject(it.Value()); o.Err() == nil {
				for o.Next() {
					if o.KeyIs("message") {
						_, _ = Plain(o.Value())
					}
				}
			}
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per walk, want 0", n)
	}
}

func FuzzMatchesEncodingJSON(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", s, got, want)
		}
		checkArray(t, s)
		checkObject(t, s)
		checkUnquote(t, s)
	})
}

func BenchmarkEvent(b *testing.B) {
	p := []byte(samples[0])
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		it := NewArray(p)
		for it.Next() {
		}
	}
}

func BenchmarkEventEncodingJSON(b *testing.B) {
	p := []byte(samples[0])
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		var args []json.RawMessage
		_ = json.Unmarshal(p, &args)
	}
}
