package transport

import (
	"math/rand/v2"
	"net/url"
	"testing"
)

// parseEngineQuery reads what url.Values.Get would, whatever the query.
func TestEngineQueryAsURLValues(t *testing.T) {
	queries := []string{
		"", "EIO=4&transport=polling", "EIO=4&transport=polling&sid=AbC-_dEf0123456789xy&t=PaXq1",
		"EIO=4&transport=websocket&sid=x", "EIO=3&transport=polling&b64=1", "sid=a&sid=b&EIO=4",
		"EIO=%34&transport=poll%69ng&sid=a+b", "EIO=4;transport=polling", "EIO=4&transport=polling;x=1&sid=s",
		"%45IO=4&transport=polling", "EIO=4&sid=%zz&sid=ok", "EIO&transport=&sid", "&&EIO=4&&", "EIO==4",
		"EIO=4&transport=polling&sid=a%26b", "sid=%2", "transport=websocket&transport=polling",
	}
	alphabet := []string{"EIO", "transport", "sid", "=", "&", ";", "%", "%3", "%34", "+", "4", "polling", "websocket", "x"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		q := ""
		for range r.IntN(12) {
			q += alphabet[r.IntN(len(alphabet))]
		}
		queries = append(queries, q)
	}
	for _, raw := range queries {
		want, _ := url.ParseQuery(raw)
		got := parseEngineQuery(raw)
		if got.eio != want.Get("EIO") || got.transport != want.Get("transport") || got.sid != want.Get("sid") {
			t.Fatalf("%q: got %+v, want EIO %q transport %q sid %q", raw, got, want.Get("EIO"), want.Get("transport"), want.Get("sid"))
		}
	}
}

// Every polling request reads the query twice (admission, routing): for
// Engine.IO's plain values that allocates nothing, where url.Values
// allocated a map and a slice per parameter.
func TestEngineQueryAllocatesNothing(t *testing.T) {
	raw := "EIO=4&transport=polling&t=PaXq1&sid=AbC-_dEf0123456789xy"
	if n := testing.AllocsPerRun(100, func() {
		if q := parseEngineQuery(raw); q.sid == "" {
			t.Fatal("no sid")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per query", n)
	}
}
