package loadtest

import (
	"encoding/json"

	"github.com/switchboard/switchboard/internal/jsonscan"
)

// The few payloads the load tool reads, read in place. Every operator reads
// every player's message (tens of thousands a second at 5,000 msg/s with
// ten operators) on the cores the server uses: decoding each into a struct
// through encoding/json (a validation pass, reflection, a copy of every
// field) cost more than the rest of the tool's work on it. The client has
// already checked that each event is well-formed JSON; these walk its
// fields once and keep only what they need, as slices of the payload.
// Names match exactly (encoding/json would also take "From" for "from");
// a field named twice counts as its last occurrence, as in encoding/json;
// a field of another JSON type than a string is ignored, as encoding/json
// leaves such a field unset.

// chatFields is what a participant reads of a chat message it gets
// (incomingMessage, operatorMessage): who sent it, and the marker, which
// rides in a text's message or an image's file name.
type chatFields struct {
	from, typ, message, name []byte // JSON text of each, nil if absent
}

func readChat(raw []byte) chatFields {
	var f chatFields
	for it := jsonscan.NewObject(raw); it.Next(); {
		v := it.Value()
		if v[0] != '"' {
			continue
		}
		switch {
		case it.KeyIs("from"):
			f.from = v
		case it.KeyIs("type"):
			f.typ = v
		case it.KeyIs("message"):
			f.message = v
		case it.KeyIs("name"):
			f.name = v
		}
	}
	return f
}

// marker reads the message's marker.
func (f *chatFields) marker() (marker, bool) {
	s := f.message
	if jsonscan.Is(f.typ, "image") {
		s = f.name
	}
	if p, ok := jsonscan.Plain(s); ok {
		return parseMarkerBytes(p)
	}
	u, ok := jsonscan.Unquote(s) // escaped: never one of ours, but read it as a server might send it
	if !ok {
		return marker{}, false
	}
	return parseMarker(u)
}

// stringField returns the string field key of the object raw, "" if it
// has none.
func stringField(raw []byte, key string) string {
	var v []byte
	for it := jsonscan.NewObject(raw); it.Next(); {
		if it.KeyIs(key) && it.Value()[0] == '"' {
			v = it.Value()
		}
	}
	s, _ := jsonscan.Unquote(v)
	return s
}

// refusal reads an acknowledgement: "" when the server accepted the
// event, else its error code ({ok:false, error:{code}}). Whatever
// encoding/json would not have read into {ok *bool, error {code string}}
// counts as accepted, as it did when this was read with it.
func refusal(raw json.RawMessage) string {
	var ok, errObj []byte
	for it := jsonscan.NewObject(raw); it.Next(); {
		switch {
		case it.KeyIs("ok"):
			ok = it.Value()
		case it.KeyIs("error"):
			errObj = it.Value()
		}
	}
	if string(ok) != "false" {
		return "" // true, null, absent, or not a boolean
	}
	var code []byte
	if errObj != nil && string(errObj) != "null" {
		if errObj[0] != '{' {
			return ""
		}
		for it := jsonscan.NewObject(errObj); it.Next(); {
			if it.KeyIs("code") {
				code = it.Value()
			}
		}
	}
	if code == nil || string(code) == "null" {
		return "refused"
	}
	c, isString := jsonscan.Unquote(code)
	switch {
	case !isString:
		return "" // not a string
	case c == "":
		return "refused"
	}
	return c
}
