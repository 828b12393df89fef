package loadtest

import (
	"encoding/json"
	"testing"
)

// The in-place readers must read what encoding/json read before them.

type receivedJSON struct {
	From    string `json:"from"`
	Type    string `json:"type"`
	Message string `json:"message"`
	Name    string `json:"name"`
}

func markerJSON(raw string) (string, marker, bool) {
	var r receivedJSON
	_ = json.Unmarshal([]byte(raw), &r)
	if r.Type == "image" {
		m, ok := parseMarker(r.Name)
		return r.From, m, ok
	}
	m, ok := parseMarker(r.Message)
	return r.From, m, ok
}

func refusalJSON(raw string) string {
	var a struct {
		OK    *bool `json:"ok"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(raw), &a) != nil || a.OK == nil || *a.OK {
		return ""
	}
	if a.Error.Code == "" {
		return "refused"
	}
	return a.Error.Code
}

var chatSamples = []string{
	`{"from":"abc","type":"text","message":"lt:1:2:3 xxxx","timestamp":"t"}`,
	`{"from":"abc","type":"image","image":"AAAA","name":"lt:4:5:6","message":"lt:1:2:3"}`,
	`{"type":"text","message":"lr:7:8:9"}`, `{"message":"lt:1:2:3","message":"lt:4:5:6"}`,
	`{"from":null,"message":"lt:1:2:3"}`, `{"from":7,"message":"lt:1:2:3"}`, `{"message":1}`,
	`{"from":"a\u0062c","message":"lt:1:2:3"}`, `{"message":"lt:\u0031:2:3"}`, `{"type":"im\u0061ge","name":"lt:1:1:1"}`,
	`{"message":"lt:+1:2:3"}`, `{"message":"lt:-1:2:3"}`, `{"message":"lt:1:2:-3"}`, `{"message":"lt:1:2:3:4"}`,
	`{"message":"lt:1:2:99999999999999999999"}`, `{"message":"lt:1:2:9223372036854775807"}`, `{"message":"lt:1:2:-9223372036854775808"}`,
	`{"message":"lt:1:2"}`, `{"message":"xx:1:2:3"}`, `{"message":"lt:1:2:3\u0020pad"}`, `{"message":""}`, `"text"`, `null`, `[]`, `{}`,
}

func TestReadChatMatchesEncodingJSON(t *testing.T) {
	r := &registry{}
	r.add("abc", &identity{slot: 1})
	for _, s := range chatSamples {
		f := readChat([]byte(s))
		got, gok := f.marker()
		wantFrom, want, wok := markerJSON(s)
		if gok != wok || got != want {
			t.Errorf("%s: marker %+v %v, encoding/json %+v %v", s, got, gok, want, wok)
		}
		if from, who := r.lookup(f.from); from != wantFrom && who != nil || (who != nil) != (r.get(wantFrom) != nil) {
			t.Errorf("%s: from %q (%v), encoding/json %q", s, from, who, wantFrom)
		}
	}
}

func TestRefusalMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`{"ok":true,"id":"x"}`, `{"ok":false,"error":{"code":"rate_limited","message":"m"}}`, `{"ok":false}`,
		`{"ok":false,"error":{}}`, `{"ok":false,"error":null}`, `{"ok":false,"error":{"code":null}}`, `{"ok":false,"error":{"code":""}}`,
		`{"ok":false,"error":"x"}`, `{"ok":false,"error":{"code":5}}`, `{"ok":null}`, `{"ok":"false"}`, `{"ok":0}`,
		`{"ok":false,"error":{"code":"a\u0062"}}`, `{"ok":true,"ok":false}`, `{"ok":false,"error":{"code":"a","code":"b"}}`,
		`{"error":{"code":"x"}}`, `null`, `[]`, ``, `"x"`,
	} {
		if got, want := refusal(json.RawMessage(s)), refusalJSON(s); got != want {
			t.Errorf("refusal(%s) = %q, encoding/json %q", s, got, want)
		}
	}
}

func TestStringField(t *testing.T) {
	for in, want := range map[string]string{`{"clientId":"a"}`: "a", `{"clientId":1}`: "", `{"x":"a"}`: "", `{"clientId":"a","clientId":"b"}`: "b", `null`: ""} {
		if got := stringField([]byte(in), "clientId"); got != want {
			t.Errorf("stringField(%s) = %q, want %q", in, got, want)
		}
	}
}
