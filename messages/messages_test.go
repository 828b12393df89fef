package messages

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestISOTimeMatchesJavaScript(t *testing.T) {
	cases := map[time.Time]string{
		time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.UTC):          "2026-01-02T03:04:05.678Z",
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC):                    "2026-01-02T03:04:05.000Z",
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)): "2026-01-02T02:04:05.000Z",
	}
	for in, want := range cases {
		if got := ISOTime(in); got != want {
			t.Errorf("ISOTime(%v) = %s, want %s", in, got, want)
		}
	}
}

func TestNumbersAreWrittenAsJavaScriptDoes(t *testing.T) {
	cases := map[float64]string{0: "0", 1234: "1234", -5: "-5", 1.5: "1.5", 1e21: "1e+21", 1e-7: "1e-7", 123456789012: "123456789012"}
	for in, want := range cases {
		if got := string(appendJSNumber(nil, in)); got != want {
			t.Errorf("%v: %s, want %s", in, got, want)
		}
	}
}

func TestFramesOmitAbsentFieldsAndKeepEmptyOnes(t *testing.T) {
	f := MustFrame(EventIncomingMessage, &IncomingMessage{From: "a", Content: Content{Type: KindText, Message: S("")}, Timestamp: "t"})
	want := `2["incomingMessage",{"from":"a","type":"text","message":"","timestamp":"t"}]`
	if string(f.Packet) != want {
		t.Fatalf("got %s\nwant %s", f.Packet, want)
	}
	f = MustFrame(EventNewChat, &NewChat{ClientID: "c", Username: S("<b>&")})
	if string(f.Packet) != `2["newChat",{"clientId":"c","username":"<b>&"}]` {
		t.Fatalf("got %s", f.Packet)
	}
	f = MustFrame(EventOperatorBroadcast, &OperatorBroadcast{ClientID: "c", OperatorID: ID{Str: "op-7", Kind: IDString}, Content: Content{Type: KindImage}, Timestamp: "t"})
	if string(f.Packet) != `2["operatorBroadcast",{"clientId":"c","operatorId":"op-7","type":"image","timestamp":"t"}]` {
		t.Fatalf("got %s", f.Packet)
	}
}

// decodeJSON runs a decoder on what the Socket.IO parser would produce.
func decodeJSON[T any](t *testing.T, dec func(any, *Limits) (T, error), src string, l *Limits) (T, error) {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(src), &v); err != nil {
		t.Fatalf("bad test input %s: %v", src, err)
	}
	return dec(v, l)
}

func TestDecodeRefusesWhatTheContractDoesNotAllow(t *testing.T) {
	l := &Limits{MaxText: 10, MaxImage: 20, MaxField: 5}
	bad := []struct {
		name string
		run  func() error
		code string
	}{
		{"message not string", func() error {
			_, err := decodeJSON(t, DecodeClientMessage, `{"type":"text","message":5}`, l)
			return err
		}, CodeInvalidType},
		{"unknown type", func() error { _, err := decodeJSON(t, DecodeClientMessage, `{"type":"video"}`, l); return err }, CodeInvalidType},
		{"missing type", func() error { _, err := decodeJSON(t, DecodeClientMessage, `{"message":"x"}`, l); return err }, CodeInvalidType},
		{"array payload", func() error { _, err := decodeJSON(t, DecodeClientMessage, `[1]`, l); return err }, CodeInvalidPayload},
		{"text too long", func() error {
			_, err := decodeJSON(t, DecodeClientMessage, `{"type":"text","message":"12345678901"}`, l)
			return err
		}, CodeTooLarge},
		{"image too long", func() error {
			_, err := decodeJSON(t, DecodeClientMessage, `{"type":"image","image":"`+strings.Repeat("A", 24)+`"}`, l)
			return err
		}, CodeTooLarge},
		{"size not number", func() error {
			_, err := decodeJSON(t, DecodeClientMessage, `{"type":"text","message":"x","size":"1"}`, l)
			return err
		}, CodeInvalidType},
		{"operatorMessage without to", func() error {
			_, err := decodeJSON(t, DecodeOperatorMessage, `{"type":"text","message":"x"}`, l)
			return err
		}, CodeInvalidPayload},
		{"operatorId object", func() error {
			_, err := decodeJSON(t, DecodeOperatorMessage, `{"to":"a","type":"text","message":"x","operatorId":{}}`, l)
			return err
		}, CodeInvalidType},
		{"isTyping string", func() error { _, err := decodeJSON(t, DecodeClientTyping, `{"isTyping":"true"}`, l); return err }, CodeInvalidType},
		{"join without role", func() error { _, err := decodeJSON(t, DecodeJoin, `{"name":"x"}`, l); return err }, CodeInvalidPayload},
		{"name too long", func() error {
			_, err := decodeJSON(t, DecodeJoin, `{"role":"client","name":"abcdefg"}`, l)
			return err
		}, CodeTooLarge},
		{"endChat string", func() error { _, err := decodeJSON(t, DecodeEndChat, `"x"`, l); return err }, CodeInvalidPayload},
	}
	for _, b := range bad {
		err := b.run()
		pe, ok := err.(*PayloadError)
		if !ok || pe.Code != b.code {
			t.Errorf("%s: err %v, want code %s", b.name, err, b.code)
		}
	}
}

func TestDecodeKeepsWhatWasSent(t *testing.T) {
	l := &Limits{}
	p, err := decodeJSON(t, DecodeClientMessage, `{"type":"image","image":"aGk=","name":"a.png","mimeType":"image/png","size":0,"timestamp":"2026-01-02T03:04:05.678Z","message":null,"extra":1}`, l)
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != KindImage || p.Image.V != "aGk=" || !p.Size.Set || p.Size.V != 0 || p.Message.Set || p.Timestamp.V != "2026-01-02T03:04:05.678Z" {
		t.Fatalf("%+v", p)
	}
	j, err := decodeJSON(t, DecodeJoin, `{"role":"operator","name":"Ana","operatorId":7}`, l)
	if err != nil || j.Role != RoleOperator || j.OperatorID.Kind != IDNumber || j.OperatorID.Num != 7 {
		t.Fatalf("%+v %v", j, err)
	}
	e, err := DecodeEndChat(nil, l)
	if err != nil || e.ClientID.Set {
		t.Fatalf("endChat without payload: %+v %v", e, err)
	}
}

func TestJSONStringsRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "ctl\x00\x1f\n\r\t\b\f", "ñ😀 <b>&</b>", "bad\xffutf8", "\u2028"} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); back != want {
			t.Fatalf("%q -> %s -> %q", s, b, back)
		}
	}
}

// A frame for a client that cannot recover loses exactly its offset.
func TestPacketWithoutOffset(t *testing.T) {
	plain := MustFrame(EventNewChat, &NewChat{ClientID: "a"})
	with, err := EncodeFrameOffset(EventNewChat, &NewChat{ClientID: "a"}, "mx5-1f")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(with.Packet), `2["newChat",{"clientId":"a"},"mx5-1f"]`; got != want {
		t.Fatalf("with offset: %s, want %s", got, want)
	}
	if got := string(with.PacketWithoutOffset()); got != string(plain.Packet) {
		t.Fatalf("without offset: %s, want %s", got, plain.Packet)
	}
	if &plain.PacketWithoutOffset()[0] != &plain.Packet[0] {
		t.Fatal("a frame without an offset was copied")
	}
}

// A frame kept in replay logs holds only its bytes: the packet keeps no
// spare capacity beyond the allocator's size class, and the offset is read
// from it.
func TestFrameKeepsExactPacket(t *testing.T) {
	for _, offset := range []string{"", "17", "abc-123"} {
		f, err := EncodeFrameOffset(EventIncomingMessage, &IncomingMessage{From: "x", Content: Content{Type: KindText, Message: S(strings.Repeat("y", 300))}, Timestamp: "t"}, offset)
		if err != nil {
			t.Fatal(err)
		}
		if cap(f.Packet) > len(f.Packet)+len(f.Packet)/8+16 {
			t.Errorf("offset %q: packet of %d bytes keeps a capacity of %d", offset, len(f.Packet), cap(f.Packet))
		}
		if f.Offset != offset || (offset != "" && !strings.HasSuffix(string(f.Packet), `,"`+offset+`"]`)) {
			t.Errorf("offset %q: frame says %q, packet %s", offset, f.Offset, f.Packet)
		}
	}
}
