package messages

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

func BenchmarkDecodeClientMessage(b *testing.B) {
	var v any
	_ = json.Unmarshal([]byte(`{"type":"text","message":"hola, ¿me ayudas con mi depósito?","timestamp":"2026-01-02T03:04:05.678Z"}`), &v)
	l := &Limits{MaxText: 5000, MaxField: 255}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeClientMessage(v, l); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeClientMessageFromWire is what the transport pays per
// event: the packet's JSON array parsed, then the typed decode.
func BenchmarkDecodeClientMessageFromWire(b *testing.B) {
	packet := []byte(`["clientMessage",{"type":"text","message":"hola, ¿me ayudas con mi depósito?","timestamp":"2026-01-02T03:04:05.678Z"}]`)
	l := &Limits{MaxText: 5000, MaxField: 255}
	b.SetBytes(int64(len(packet)))
	b.ReportAllocs()
	for b.Loop() {
		var args []any
		if err := json.Unmarshal(packet, &args); err != nil {
			b.Fatal(err)
		}
		if _, known, err := Decode(args[0].(string), args[1], Origin{}, l); !known || err != nil {
			b.Fatal(known, err)
		}
	}
}

func BenchmarkValidateImage1MB(b *testing.B) {
	raw := make([]byte, 750_000)
	copy(raw, "\x89PNG\r\n\x1a\n")
	img := "data:image/png;base64," + base64.StdEncoding.EncodeToString(raw)
	allowed := []string{"image/png"}
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if err := validateImage(img, Str{}, allowed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeIncomingMessage(b *testing.B) {
	m := &IncomingMessage{From: "b0c-k-B197lDKwAAAAAAAAAD", Content: Content{Type: KindText, Message: S(strings.Repeat("hola ", 20))}, Timestamp: "2026-01-02T03:04:05.678Z"}
	b.ReportAllocs()
	for b.Loop() {
		_ = MustFrame(EventIncomingMessage, m)
	}
}
