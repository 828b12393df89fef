package messages

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/jsonscan"
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
// event: the packet's JSON array decoded (jsonscan.Decode, as the
// transport does), then the typed decode.
func BenchmarkDecodeClientMessageFromWire(b *testing.B) {
	benchFromWire(b, func(p []byte) ([]any, error) {
		v, err := jsonscan.Decode(p, 1024)
		args, _ := v.([]any)
		return args, err
	})
}

// BenchmarkDecodeClientMessageFromWireEncodingJSON is the same through
// json.Unmarshal, as the transport decoded events before jsonscan.Decode.
func BenchmarkDecodeClientMessageFromWireEncodingJSON(b *testing.B) {
	benchFromWire(b, func(p []byte) ([]any, error) {
		var args []any
		err := json.Unmarshal(p, &args)
		return args, err
	})
}

func benchFromWire(b *testing.B, parse func([]byte) ([]any, error)) {
	packet := []byte(`["clientMessage",{"type":"text","message":"hola, ¿me ayudas con mi depósito?","timestamp":"2026-01-02T03:04:05.678Z"}]`)
	l := &Limits{MaxText: 5000, MaxField: 255}
	b.SetBytes(int64(len(packet)))
	b.ReportAllocs()
	for b.Loop() {
		args, err := parse(packet)
		if err != nil || len(args) != 2 {
			b.Fatal(args, err)
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
