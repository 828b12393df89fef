package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// parseEventJSON is how events were read before the in-place walk, through
// encoding/json: the reference that parseEvent must match.
func parseEventJSON(b []byte, pid string) (Event, string, error) {
	var args []json.RawMessage
	if err := json.Unmarshal(b, &args); err != nil || len(args) == 0 {
		return Event{}, "", fmt.Errorf("bad event %q", b)
	}
	var ev Event
	if err := json.Unmarshal(args[0], &ev.Name); err != nil {
		return Event{}, "", err
	}
	rest := args[1:]
	offset := ""
	if n := len(rest); pid != "" && n > 0 && len(rest[n-1]) > 0 && rest[n-1][0] == '"' {
		if json.Unmarshal(rest[n-1], &ev.Offset) == nil {
			offset = ev.Offset
			rest = rest[:n-1]
		}
	}
	if len(rest) > 0 {
		ev.Payload = rest[0]
	}
	return ev, offset, nil
}

var eventSamples = []string{
	`["incomingMessage",{"from":"a","message":"lt:1:2:3"},"17-4"]`,
	`["incomingMessage",{"from":"a"}]`,
	`["x"]`, `["x","only-a-string"]`, `["x","a","b"]`, `["x",1,2,"3"]`, `[ "x" , { } , "o" ]`,
	`["caf\u00e9",null]`, `["a\"b",{}]`, `[null,{}]`, `[1,{}]`, `[]`, `null`, `{}`, `["x",]`, `["x"`,
	`["x",{"a":1}] `, `["x",{"a":1}]]`, "[\"\xff\",1]", `["<&>",1]`,
}

func TestParseEventMatchesEncodingJSON(t *testing.T) {
	for _, pid := range []string{"", "pid"} {
		for _, s := range eventSamples {
			c := &Client{pid: pid}
			got, gerr := c.parseEvent([]byte(s))
			want, offset, werr := parseEventJSON([]byte(s), pid)
			if (gerr != nil) != (werr != nil) {
				t.Errorf("pid %q, %s: error %v, encoding/json %v", pid, s, gerr, werr)
				continue
			}
			if gerr != nil {
				continue
			}
			if got.Name != want.Name || got.Offset != want.Offset || !bytes.Equal(got.Payload, want.Payload) {
				t.Errorf("pid %q, %s: got %q %q %s, encoding/json %q %q %s", pid, s, got.Name, got.Offset, got.Payload, want.Name, want.Offset, want.Payload)
			}
			if c.offset != offset {
				t.Errorf("pid %q, %s: recorded offset %q, want %q", pid, s, c.offset, offset)
			}
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range eventSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := &Client{pid: "p"}
		got, gerr := c.parseEvent([]byte(s))
		want, _, werr := parseEventJSON([]byte(s), "p")
		if (gerr != nil) != (werr != nil) {
			t.Fatalf("%q: error %v, encoding/json %v", s, gerr, werr)
		}
		if gerr == nil && (got.Name != want.Name || got.Offset != want.Offset || !bytes.Equal(got.Payload, want.Payload)) {
			t.Fatalf("%q: got %q %q %s, encoding/json %q %q %s", s, got.Name, got.Offset, got.Payload, want.Name, want.Offset, want.Payload)
		}
	})
}

// packetJSON is how packets were encoded before: a json.Encoder over the
// argument list.
func packetJSON(event string, payload any) string {
	var b bytes.Buffer
	args := []any{event}
	if payload != nil {
		args = append(args, payload)
	}
	_ = json.NewEncoder(&b).Encode(args)
	return "42" + string(bytes.TrimRight(b.Bytes(), "\n"))
}

func TestPacketMatchesEncodingJSON(t *testing.T) {
	type msg struct {
		To      string `json:"to,omitempty"`
		Message string `json:"message"`
	}
	c := &Client{acks: map[int]func(json.RawMessage){}}
	for _, tc := range []struct {
		event   string
		payload any
	}{
		{"clientMessage", msg{Message: "lt:1:2:3 <b>&"}}, {"join", map[string]any{"role": "client"}}, {"endChat", nil},
		{"a\"b", 1}, {"<x>", "y"}, {"café", nil}, {"tab\t", []int{1}},
	} {
		got, err := c.packet(tc.event, tc.payload, nil)
		if err != nil || string(got) != packetJSON(tc.event, tc.payload) {
			t.Errorf("packet(%q, %v) = %s, %v; encoding/json %s", tc.event, tc.payload, got, err, packetJSON(tc.event, tc.payload))
		}
	}
	got, _ := c.packet("x", 1, func(json.RawMessage) {})
	if string(got) != `421["x",1]` {
		t.Errorf("with an ack: %s, want 421[\"x\",1]", got)
	}
	if _, err := c.packet("x", func() {}, nil); err == nil {
		t.Error("an unencodable payload was accepted")
	}
}

func TestFirstArg(t *testing.T) {
	for in, want := range map[string]string{`[{"ok":true}]`: `{"ok":true}`, `[1,2]`: `1`, `[]`: ``, `[1,`: ``, `x`: ``, ``: ``} {
		if got := firstArg([]byte(in)); string(got) != want {
			t.Errorf("firstArg(%q) = %q, want %q", in, got, want)
		}
	}
}
