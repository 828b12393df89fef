package loadtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// tokens makes the handshake auth for each participant: a fixed token per
// role, or an HS256 JWT per connection when a secret is given. Without
// either, participants connect without auth.
type tokens struct {
	player, operator string
	secret           []byte
	ttl              time.Duration
}

func newTokens(sc *Scenario) *tokens {
	return &tokens{player: sc.PlayerToken, operator: sc.OperatorToken, secret: []byte(sc.TokenSecret), ttl: sc.TokenTTL}
}

// mode says, for the report, how participants authenticate.
func (t *tokens) mode() string {
	switch {
	case t.player != "" || t.operator != "":
		return "fixed token"
	case len(t.secret) > 0:
		return "HS256 JWT"
	}
	return "none"
}

// auth returns the handshake auth object, or nil for none.
func (t *tokens) auth(claims map[string]any, operator bool) (map[string]any, error) {
	fixed := t.player
	if operator {
		fixed = t.operator
	}
	if fixed != "" {
		return map[string]any{"token": fixed}, nil
	}
	if len(t.secret) == 0 {
		return nil, nil
	}
	now := time.Now()
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(t.ttl).Unix()
	tok, err := signHS256(claims, t.secret)
	if err != nil {
		return nil, err
	}
	return map[string]any{"token": tok}, nil
}

// signHS256 makes a compact JWT (RFC 7519) signed with HMAC-SHA256.
func signHS256(claims map[string]any, secret []byte) (string, error) {
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token claims: %w", err)
	}
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(s))
	return s + "." + enc.EncodeToString(mac.Sum(nil)), nil
}
