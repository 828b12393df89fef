package test

import (
	"fmt"
	"testing"
	"time"
)

// TestContract drives every row of the wire contract over each transport.
func TestContract(t *testing.T) {
	for mode, m := range transportModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range contractCases {
				t.Run(tc.name, func(t *testing.T) {
					// A server per case: no socket of one case lingers into the next.
					tc.run(t, startServer(t, modeConfig(mode)), mode)
				})
			}
		})
	}
}

var contractCases = []struct {
	name string
	run  func(t *testing.T, s *server, mode int)
}{
	{"client join notifies every operator", func(t *testing.T, s *server, mode int) {
		op1, op2 := joinOperator(t, s, mode, "op1", 1), joinOperator(t, s, mode, "op2", 2)
		cl := dial(t, s, "cl", mode, nil)
		cl.emit("join", map[string]any{"role": "client", "name": "Bob", "username": "bob77", "phone": "+34 600"})
		want := fmt.Sprintf(`{"clientId":%q,"username":"bob77","phone":"+34 600"}`, cl.id())
		op1.expectJSON("newChat", want, false)
		op2.expectJSON("newChat", want, false)
		cl.expectNothing()
	}},
	{"username falls back to name; absent phone stays absent", func(t *testing.T, s *server, mode int) {
		op := joinOperator(t, s, mode, "op", 1)
		cl := dial(t, s, "cl", mode, nil)
		cl.emit("join", map[string]any{"role": "client", "name": "Bob"})
		op.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"Bob"}`, cl.id()), false)
		cl2 := dial(t, s, "cl2", mode, nil)
		cl2.emit("join", map[string]any{"role": "client", "name": "Eve", "username": ""})
		op.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"Eve"}`, cl2.id()), false)
	}},
	{"operator join lists current clients in join order", func(t *testing.T, s *server, mode int) {
		a := joinClient(t, s, mode, "a", map[string]any{"role": "client", "name": "A", "phone": "1"})
		b := joinClient(t, s, mode, "b", map[string]any{"role": "client", "name": "B", "username": "bee"})
		op := dial(t, s, "op", mode, nil)
		op.emit("join", map[string]any{"role": "operator", "name": "Ana", "operatorId": 7})
		op.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"A","phone":"1"}`, a.id()), false)
		op.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"bee"}`, b.id()), false)
		op.expectNothing()
		a.expectNothing()
	}},
	{"clientMessage reaches every operator with the server's timestamp", func(t *testing.T, s *server, mode int) {
		op1, op2 := joinOperator(t, s, mode, "op1", 1), joinOperator(t, s, mode, "op2", 2)
		cl := joinClient(t, s, mode, "cl", nil)
		drain(op1, op2)
		cl.emit("clientMessage", map[string]any{"type": "text", "message": "hola <b>&</b> ñ 😀"})
		want := fmt.Sprintf(`{"from":%q,"type":"text","message":"hola <b>&</b> ñ 😀","timestamp":"<ts>"}`, cl.id())
		op1.expectJSON("incomingMessage", want, true)
		op2.expectJSON("incomingMessage", want, true)
		cl.expectNothing()
	}},
	{"clientMessage image keeps every field and the client's timestamp", func(t *testing.T, s *server, mode int) {
		op := joinOperator(t, s, mode, "op", 1)
		cl := joinClient(t, s, mode, "cl", nil)
		drain(op)
		cl.emit("clientMessage", map[string]any{"type": "image", "image": "data:image/png;base64,iVBORw0KGgo=", "name": "a.png", "mimeType": "image/png", "size": 1234, "timestamp": "2026-01-02T03:04:05.678Z"})
		op.expectJSON("incomingMessage", fmt.Sprintf(`{"from":%q,"type":"image","image":"data:image/png;base64,iVBORw0KGgo=","name":"a.png","mimeType":"image/png","size":1234,"timestamp":"2026-01-02T03:04:05.678Z"}`, cl.id()), false)
	}},
	{"operatorMessage reaches its client and the other operators", func(t *testing.T, s *server, mode int) {
		op1, op2, op3 := joinOperator(t, s, mode, "op1", 1), joinOperator(t, s, mode, "op2", 2), joinOperator(t, s, mode, "op3", 3)
		cl := joinClient(t, s, mode, "cl", nil)
		other := joinClient(t, s, mode, "other", nil)
		drain(op1, op2, op3)
		op1.emit("operatorMessage", map[string]any{"to": cl.id(), "type": "image", "image": "R0lGODlhAQABAA==", "name": "x.gif", "mimeType": "image/gif", "size": 2, "operatorId": 1, "operatorName": "Ana"})
		got := cl.expectJSON("operatorMessage", `{"type":"image","image":"R0lGODlhAQABAA==","name":"x.gif","mimeType":"image/gif","operatorName":"Ana","timestamp":"<ts>"}`, true)
		want := fmt.Sprintf(`{"clientId":%q,"operatorId":1,"operatorName":"Ana","type":"image","image":"R0lGODlhAQABAA==","name":"x.gif","mimeType":"image/gif","timestamp":"<ts>"}`, cl.id())
		b2 := op2.expectJSON("operatorBroadcast", want, true)
		b3 := op3.expectJSON("operatorBroadcast", want, true)
		if b2.Data["timestamp"] != got.Data["timestamp"] || b3.Data["timestamp"] != got.Data["timestamp"] {
			t.Fatalf("timestamps differ: client %v, op2 %v, op3 %v", got.Data["timestamp"], b2.Data["timestamp"], b3.Data["timestamp"])
		}
		op1.expectNothing()
		other.expectNothing()
	}},
	{"typing indicators", func(t *testing.T, s *server, mode int) {
		op1, op2 := joinOperator(t, s, mode, "op1", 1), joinOperator(t, s, mode, "op2", 2)
		cl := joinClient(t, s, mode, "cl", nil)
		drain(op1, op2)
		cl.emit("clientTyping", map[string]any{"isTyping": true})
		op1.expectJSON("clientTyping", fmt.Sprintf(`{"from":%q,"isTyping":true}`, cl.id()), false)
		op2.expectJSON("clientTyping", fmt.Sprintf(`{"from":%q,"isTyping":true}`, cl.id()), false)
		op1.emit("operatorTyping", map[string]any{"to": cl.id(), "isTyping": false})
		cl.expectJSON("operatorTyping", `{"isTyping":false}`, false)
		op2.expectNothing()
		op1.expectNothing()
	}},
	{"client ends its chat and stays listed", func(t *testing.T, s *server, mode int) {
		op := joinOperator(t, s, mode, "op", 1)
		cl := joinClient(t, s, mode, "cl", nil)
		drain(op)
		cl.emit("endChat", map[string]any{})
		op.expectJSON("chatEnded", fmt.Sprintf(`{"clientId":%q}`, cl.id()), false)
		cl.expectNothing()
		if h := health(t, s); h.Connections.Clients != 1 {
			t.Fatalf("client not listed after endChat: %+v", h.Connections)
		}
		cl.emit("clientMessage", map[string]any{"type": "text", "message": "still here"})
		op.expect("incomingMessage")
	}},
	{"operator ends a chat", func(t *testing.T, s *server, mode int) {
		op1, op2 := joinOperator(t, s, mode, "op1", 1), joinOperator(t, s, mode, "op2", 2)
		cl := joinClient(t, s, mode, "cl", nil)
		other := joinClient(t, s, mode, "other", nil)
		drain(op1, op2)
		op1.emit("endChat", map[string]any{"clientId": cl.id(), "operatorId": 1})
		want := fmt.Sprintf(`{"clientId":%q}`, cl.id())
		op1.expectJSON("chatEnded", want, false)
		op2.expectJSON("chatEnded", want, false)
		cl.expectJSON("chatEnded", `{"message":"El operador ha finalizado la conversación"}`, false)
		other.expectNothing()
	}},
	{"client disconnect ends its chat for every operator", func(t *testing.T, s *server, mode int) {
		op1, op2 := joinOperator(t, s, mode, "op1", 1), joinOperator(t, s, mode, "op2", 2)
		cl := joinClient(t, s, mode, "cl", nil)
		drain(op1, op2)
		id := cl.id()
		cl.conn.Close()
		want := fmt.Sprintf(`{"clientId":%q,"reason":"disconnect"}`, id)
		op1.expectJSON("chatEnded", want, false)
		op2.expectJSON("chatEnded", want, false)
	}},
	{"operator disconnect tells nobody", func(t *testing.T, s *server, mode int) {
		op1, op2 := joinOperator(t, s, mode, "op1", 1), joinOperator(t, s, mode, "op2", 2)
		cl := joinClient(t, s, mode, "cl", nil)
		drain(op1, op2)
		op1.conn.Close()
		waitFor(t, 3*time.Second, func() error {
			if h := health(t, s); h.Connections.Operators != 1 {
				return fmt.Errorf("operators = %d", h.Connections.Operators)
			}
			return nil
		})
		op2.expectNothing()
		cl.expectNothing()
	}},
	{"wrong-role and unjoined events deliver nothing; the sender alone is told", func(t *testing.T, s *server, mode int) {
		op1, op2 := joinOperator(t, s, mode, "op1", 1), joinOperator(t, s, mode, "op2", 2)
		cl := joinClient(t, s, mode, "cl", nil)
		cl2 := joinClient(t, s, mode, "cl2", nil)
		stranger := dial(t, s, "stranger", mode, nil)
		drain(op1, op2)
		cases := []struct {
			from    *client
			event   string
			payload map[string]any
			code    string
		}{
			{cl, "operatorMessage", map[string]any{"to": cl2.id(), "type": "text", "message": "x", "operatorId": 1, "operatorName": "fake"}, "wrong_role"},
			{cl, "operatorTyping", map[string]any{"to": cl2.id(), "isTyping": true}, "wrong_role"},
			{op1, "clientMessage", map[string]any{"type": "text", "message": "x"}, "wrong_role"},
			{op1, "clientTyping", map[string]any{"isTyping": true}, "wrong_role"},
			{op1, "operatorMessage", map[string]any{"to": op2.id(), "type": "text", "message": "to an operator", "operatorId": 1, "operatorName": "Ana"}, "unknown_target"},
			{op1, "operatorTyping", map[string]any{"to": op2.id(), "isTyping": true}, "unknown_target"},
			{op1, "operatorMessage", map[string]any{"to": "no-such-socket", "type": "text", "message": "x", "operatorId": 1, "operatorName": "Ana"}, "unknown_target"},
			{stranger, "clientMessage", map[string]any{"type": "text", "message": "x"}, "not_joined"},
			{stranger, "operatorMessage", map[string]any{"to": cl.id(), "type": "text", "message": "x", "operatorId": 1, "operatorName": "Ana"}, "not_joined"},
			{stranger, "clientTyping", map[string]any{"isTyping": true}, "not_joined"},
			{stranger, "endChat", map[string]any{"clientId": cl.id()}, "not_joined"},
		}
		for _, c := range cases {
			c.from.emit(c.event, c.payload)
			c.from.expectRefused(c.event, c.code)
		}
		for _, c := range []*client{op1, op2, cl, cl2, stranger} {
			c.expectNothing()
		}
		// Unjoined sockets receive nothing of what others do.
		cl.emit("clientMessage", map[string]any{"type": "text", "message": "real"})
		op1.expect("incomingMessage")
		op2.expect("incomingMessage")
		stranger.expectNothing()
	}},
	{"health and stats follow joins and disconnects", func(t *testing.T, s *server, mode int) {
		base := health(t, s)
		op := dial(t, s, "op", mode, nil)
		op.join(s, map[string]any{"role": "operator", "name": "Ana", "operatorId": 42})
		cl := dial(t, s, "cl", mode, nil)
		cl.join(s, map[string]any{"role": "client", "name": "Bob", "username": "bob"})
		_ = dial(t, s, "stranger", mode, nil) // not counted: never joined
		h := health(t, s)
		if h.Status != "ok" || h.Connections.Total != base.Connections.Total+2 || h.Connections.Clients != base.Connections.Clients+1 || h.Connections.Operators != base.Connections.Operators+1 {
			t.Fatalf("health after joins: %+v (before %+v)", h, base)
		}
		checkTimestamp(t, h.Timestamp)
		var st struct {
			Timestamp string
			Summary   struct{ TotalConnections, TotalClients, TotalOperators int }
			Clients   []map[string]any
			Operators []map[string]any
		}
		getJSON(t, s.URL+"/stats", &st)
		checkTimestamp(t, st.Timestamp)
		if st.Summary.TotalConnections != h.Connections.Total || st.Summary.TotalClients != h.Connections.Clients || len(st.Clients) != st.Summary.TotalClients || len(st.Operators) != st.Summary.TotalOperators {
			t.Fatalf("stats summary %+v, lists %d/%d", st.Summary, len(st.Clients), len(st.Operators))
		}
		last := st.Clients[len(st.Clients)-1]
		checkTimestamp(t, last["connectedAt"])
		if last["socketId"] != cl.id() || last["name"] != "Bob" || last["username"] != "bob" || len(last) != 4 {
			t.Fatalf("stats client %v", last)
		}
		lastOp := st.Operators[len(st.Operators)-1]
		if lastOp["socketId"] != op.id() || lastOp["name"] != "Ana" || lastOp["operatorId"] != float64(42) || len(lastOp) != 4 {
			t.Fatalf("stats operator %v", lastOp)
		}
		cl.conn.Close()
		op.conn.Close()
		waitFor(t, 3*time.Second, func() error {
			if h := health(t, s); h.Connections != base.Connections {
				return fmt.Errorf("after disconnects %+v, want %+v", h.Connections, base.Connections)
			}
			return nil
		})
	}},
	{"malformed payloads are answered to the sender only", func(t *testing.T, s *server, mode int) {
		op := joinOperator(t, s, mode, "op", 1)
		cl := joinClient(t, s, mode, "cl", nil)
		drain(op)
		cases := []struct {
			event   string
			payload any
			code    string
		}{
			{"clientMessage", map[string]any{"type": "video", "message": "x"}, "invalid_type"},
			{"clientMessage", "just a string", "invalid_payload"},
			{"clientMessage", []any{1, 2}, "invalid_payload"},
			{"clientMessage", map[string]any{"type": "text", "message": 42}, "invalid_type"},
			{"clientTyping", map[string]any{"isTyping": "yes"}, "invalid_type"},
			{"join", map[string]any{"role": "admin", "name": "x"}, "invalid_payload"},
		}
		for _, c := range cases {
			cl.emit(c.event, c.payload)
			ev := cl.expect("chatError")
			if ev.Data["code"] != c.code || ev.Data["event"] != c.event || ev.Data["message"] == "" {
				t.Fatalf("%s %v: chatError %s, want code %s", c.event, c.payload, ev.Raw, c.code)
			}
		}
		op.expectNothing()
		cl.emit("clientMessage", map[string]any{"type": "text", "message": "after the errors"})
		op.expect("incomingMessage")
	}},
}

func joinOperator(t *testing.T, s *server, mode int, label string, id int) *client {
	t.Helper()
	return opOn(t, []*server{s}, s, mode, label, id)
}

func joinClient(t *testing.T, s *server, mode int, label string, payload map[string]any) *client {
	t.Helper()
	return clientOn(t, []*server{s}, s, mode, label, payload)
}

// drain drops what clients received so far (newChat lists and the like),
// once the server has had time to send it.
func drain(cs ...*client) {
	time.Sleep(50 * time.Millisecond)
	for _, c := range cs {
		for {
			select {
			case <-c.events:
				continue
			default:
			}
			break
		}
	}
}
