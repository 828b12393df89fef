package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchboard/switchboard/messages"
)

const (
	operatorSecret = "operator-secret-operator-secret-0123"
	clientSecret   = "client-secret-client-secret-client-0123"
)

func sign(t *testing.T, secret string, c jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func verifier(t *testing.T, allowNoExp bool) *Verifier {
	t.Helper()
	v, err := New(Config{OperatorSecret: operatorSecret, ClientSecret: clientSecret, Leeway: 30 * time.Second, AllowNoExp: allowNoExp})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A token that never expires is refused by default, for operators and
// players alike, with a reason that says so; one that expires passes.
func TestTokensWithoutExpAreRefused(t *testing.T) {
	v := verifier(t, false)
	exp := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct {
		name   string
		secret string
		claims jwt.MapClaims
		role   messages.Role
	}{
		{"operator", operatorSecret, jwt.MapClaims{"sub": "op-1"}, messages.RoleOperator},
		{"player", clientSecret, jwt.MapClaims{"username": "bob"}, messages.RoleClient},
	} {
		_, err := v.Verify(sign(t, c.secret, c.claims))
		if !errors.Is(err, ErrNoExp) || !strings.Contains(err.Error(), "token has no exp claim") {
			t.Errorf("%s without exp: err = %v, want %q", c.name, err, ErrNoExp)
		}
		c.claims["exp"] = exp
		id, err := v.Verify(sign(t, c.secret, c.claims))
		if err != nil || id.Role != c.role {
			t.Errorf("%s with exp: %+v %v", c.name, id, err)
		}
	}
	// exp is still checked when it is there.
	if _, err := v.Verify(sign(t, operatorSecret, jwt.MapClaims{"sub": "op-1", "exp": time.Now().Add(-time.Hour).Unix()})); err == nil || errors.Is(err, ErrNoExp) {
		t.Errorf("expired: err = %v", err)
	}
	// A forged token without exp is refused for its signature, not its exp.
	if _, err := v.Verify(sign(t, "forged-forged-forged-forged-forged-0123", jwt.MapClaims{"sub": "op-1"})); err == nil || errors.Is(err, ErrNoExp) {
		t.Errorf("forged: err = %v", err)
	}
}

// AllowNoExp lets tokens without exp through, and expired ones still not.
func TestAllowNoExp(t *testing.T) {
	v := verifier(t, true)
	if id, err := v.Verify(sign(t, operatorSecret, jwt.MapClaims{"sub": "op-1"})); err != nil || id.Role != messages.RoleOperator {
		t.Errorf("operator without exp: %+v %v", id, err)
	}
	if id, err := v.Verify(sign(t, clientSecret, jwt.MapClaims{"username": "bob"})); err != nil || id.Role != messages.RoleClient {
		t.Errorf("player without exp: %+v %v", id, err)
	}
	if _, err := v.Verify(sign(t, operatorSecret, jwt.MapClaims{"sub": "op-1", "exp": time.Now().Add(-time.Hour).Unix()})); err == nil {
		t.Error("expired token accepted")
	}
}

// A token whose signature's last character is changed to one that a
// lenient base64url decoder reads as the same bytes (its spare bits set)
// is refused, for operators and players; the token as signed still passes.
func TestNonCanonicalSignatureIsRefused(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	v := verifier(t, false)
	exp := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct {
		name   string
		secret string
		claims jwt.MapClaims
	}{
		{"operator", operatorSecret, jwt.MapClaims{"sub": "op-1", "exp": exp}},
		{"player", clientSecret, jwt.MapClaims{"username": "bob", "exp": exp}},
	} {
		tok := sign(t, c.secret, c.claims)
		// 32 signature bytes are 43 characters: the last one's low 2 bits are spare.
		i := strings.IndexByte(alphabet, tok[len(tok)-1])
		if i%4 != 0 {
			t.Fatalf("%s: last character %q is not canonical", c.name, tok[len(tok)-1])
		}
		twin := tok[:len(tok)-1] + string(alphabet[i+1])
		if _, err := v.Verify(twin); err == nil {
			t.Errorf("%s: %q accepted with its signature's spare bits set", c.name, twin)
		}
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("%s: the token as signed: %v", c.name, err)
		}
	}
}
