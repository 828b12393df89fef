package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
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

// checkDecode compares Decode with json.Unmarshal into an any.
func checkDecode(t *testing.T, s string) {
	var want any
	werr := json.Unmarshal([]byte(s), &want)
	got, err := Decode([]byte(s), 0)
	if (err != nil) != (werr != nil) {
		t.Fatalf("Decode(%.200q): err %v, encoding/json %v", s, err, werr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode(%.200q) = %#v, encoding/json %#v", s, got, want)
	}
}

// decodeSamples add to samples what decoding can get wrong: escapes,
// surrogates, invalid UTF-8, repeated names, numbers out of range.
var decodeSamples = []string{
	`{"a":1,"a":2}`, `{"a":{"b":1},"a":[1]}`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00\ud83d"`, `"\ud83dx"`,
	`"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`, `"a\u0000b"`, `"\u00E9\u00e9"`, "\"\xed\xa0\x80\"", "\"a\xc3\"",
	"\"\xf0\x9f\x98\x80\"", "\"\xef\xbf\xbd\"", `1e400`, `-1e400`, `1e-400`, `[1,1e999]`, `{"a":1e999,"b":}`,
	`123456789012345678901234567890`, `-0.0`, `[[],{}]`, `{"\u0061":1}`, `{"":null}`, `["x",]`,
	`"日本語のテキストです\n日本語のテキスト"`, "\"\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\"", "\"ab\xc3\xa9cdefgh\x01\"",
	"\"abcdefgh\xff\xfeijklmnop\"", `"éééééééé\"ééé"`,
	`["clientMessage",{"type":"image","image":"data:image/png;base64,` + strings.Repeat("QUJD", 5000) + `"}]`,
}

func TestWalksMatchEncodingJSON(t *testing.T) {
	for _, s := range append(samples, decodeSamples...) {
		checkArray(t, s)
		checkObject(t, s)
		checkUnquote(t, s)
		checkDecode(t, s)
	}
	deep := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	checkDecode(t, deep)
	checkDecode(t, "["+deep+"]")
	checkDecode(t, strings.Repeat(`{"a":`, maxDepth)+"1"+strings.Repeat("}", maxDepth))
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
	for _, s := range append(samples, decodeSamples...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkDecode(t, s)
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

// Past its limit Decode stops: the values it counts are every scalar,
// array and object, and it decodes nothing more.
func TestDecodeStopsPastItsLimit(t *testing.T) {
	event := `["clientMessage",{"type":"text","message":"hi","to":[1,2]}]` // 8 values
	if _, err := Decode([]byte(event), 8); err != nil {
		t.Fatalf("8 values with a limit of 8: %v", err)
	}
	if _, err := Decode([]byte(event), 7); !errors.Is(err, ErrTooManyValues) {
		t.Fatalf("8 values with a limit of 7: %v, want ErrTooManyValues", err)
	}
	// 20 MB of numbers: refused at the 1,025th, having allocated for no
	// more than the 1,024 before it.
	flood := []byte("[" + strings.Repeat("1,", 10_000_000) + "1]")
	allocs := testing.AllocsPerRun(1, func() {
		if _, err := Decode(flood, 1024); !errors.Is(err, ErrTooManyValues) {
			t.Fatalf("10,000,001 numbers with a limit of 1,024: %v, want ErrTooManyValues", err)
		}
	})
	if allocs > 1024+32 {
		t.Fatalf("%v allocations to refuse 10,000,001 values with a limit of 1,024", allocs)
	}
}

// A 10 MB image event, as a player may send one: Decode against
// encoding/json (96 ms per event on the development machine).
var imageEvent = []byte(`["clientMessage",{"type":"image","mimeType":"image/png","image":"data:image/png;base64,` +
	strings.Repeat("A", 10_000_000) + `"}]`)

func BenchmarkDecodeImage(b *testing.B) {
	b.SetBytes(int64(len(imageEvent)))
	for b.Loop() {
		if _, err := Decode(imageEvent, 64); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeImageEncodingJSON(b *testing.B) {
	b.SetBytes(int64(len(imageEvent)))
	for b.Loop() {
		var v any
		if err := json.Unmarshal(imageEvent, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	p := []byte(samples[0])
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		_, _ = Decode(p, 64)
	}
}

func BenchmarkDecodeEventEncodingJSON(b *testing.B) {
	p := []byte(samples[0])
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		var v any
		_ = json.Unmarshal(p, &v)
	}
}
