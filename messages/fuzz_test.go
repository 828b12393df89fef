package messages

import (
	"encoding/json"
	"testing"
)

// FuzzDecode feeds arbitrary JSON, as the Socket.IO parser would hand it
// over, to every decoder: none may panic, and an accepted payload must
// re-encode into a valid frame. The corpus lives in testdata/fuzz.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"role":"client","name":"Bob","username":"b","phone":"1"}`,
		`{"type":"text","message":"hola","timestamp":"2026-01-02T03:04:05.678Z","size":3}`,
		`{"type":"image","image":"data:image/png;base64,iVBORw0KGgo=","mimeType":"image/png"}`,
		`{"type":"image","image":"R0lGODlhAQABAA==","mimeType":"image/gif"}`,
		`{"to":"abc","type":"text","message":"x","operatorId":7,"operatorName":"Ana"}`,
		`{"to":"abc","isTyping":true}`,
		`{"clientId":"abc","operatorId":"op-1"}`,
		`null`, `[]`, `"x"`, `1e400`, `{"type":null}`, `{"image":"data:,"}`,
	} {
		f.Add([]byte(seed))
	}
	l := &Limits{MaxText: 5000, MaxImage: 1 << 20, MaxField: 255, ImageTypes: []string{"image/png", "image/jpeg", "image/gif", "image/webp"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		if p, err := DecodeJoin(v, l); err == nil {
			_ = MustFrame(EventNewChat, &NewChat{ClientID: "c", Username: p.Username.Or(p.Name), Phone: p.Phone})
		}
		if p, err := DecodeClientMessage(v, l); err == nil {
			checkFrame(t, MustFrame(EventIncomingMessage, &IncomingMessage{From: "c", Content: p.Content, Size: p.Size, Timestamp: p.Timestamp.V}))
		}
		if p, err := DecodeOperatorMessage(v, l); err == nil {
			if p.To == "" {
				t.Fatal("accepted an operatorMessage without to")
			}
			checkFrame(t, MustFrame(EventOperatorBroadcast, &OperatorBroadcast{ClientID: p.To, OperatorID: p.OperatorID, OperatorName: p.OperatorName, Content: p.Content}))
		}
		_, _ = DecodeClientTyping(v, l)
		_, _ = DecodeOperatorTyping(v, l)
		_, _ = DecodeEndChat(v, l)
	})
}

func checkFrame(t *testing.T, f *Frame) {
	t.Helper()
	var pkt []any
	if f.Packet[0] != '2' || json.Unmarshal(f.Packet[1:], &pkt) != nil || len(pkt) != 2 {
		t.Fatalf("invalid frame %s", f.Packet)
	}
}
