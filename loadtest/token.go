package loadtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// tokens makes the handshake auth for each participant, per role: a fixed
// token, or an HS256 JWT signed for each connection when the role has a
// secret. A role with neither connects without auth.
type tokens struct {
	fixed    [2]string // [player, operator]
	secret   [2][]byte
	issuer   string
	audience string
	ttl      time.Duration
}

func newTokens(sc *Scenario) *tokens {
	return &tokens{
		fixed:    [2]string{sc.PlayerToken, sc.OperatorToken},
		secret:   [2][]byte{[]byte(sc.PlayerSecret), []byte(sc.OperatorSecret)},
		issuer:   sc.TokenIssuer,
		audience: sc.TokenAudience,
		ttl:      sc.TokenTTL,
	}
}

func role(operator bool) int {
	if operator {
		return 1
	}
	return 0
}

// mode says, for the report, how participants authenticate.
func (t *tokens) mode() string {
	name := func(i int) string {
		switch {
		case t.fixed[i] != "":
			return "fixed token"
		case len(t.secret[i]) > 0:
			return "HS256 JWT"
		}
		return "none"
	}
	if p, o := name(0), name(1); p != o {
		return "players " + p + ", operators " + o
	}
	return name(0)
}

// auth returns the handshake auth object, or nil for none. claims are the
// participant's (sub, role, name, operatorId…); the times, issuer and
// audience are added here.
func (t *tokens) auth(claims map[string]any, operator bool) (map[string]any, error) {
	r := role(operator)
	if t.fixed[r] != "" {
		return map[string]any{"token": t.fixed[r]}, nil
	}
	if len(t.secret[r]) == 0 {
		return nil, nil
	}
	now := time.Now()
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(t.ttl).Unix()
	if t.issuer != "" {
		claims["iss"] = t.issuer
	}
	if t.audience != "" {
		claims["aud"] = t.audience
	}
	tok, err := signHS256(claims, t.secret[r])
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
