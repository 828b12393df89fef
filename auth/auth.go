// Package auth verifies the tokens that sockets present in their handshake:
// operators' JWTs (HS256 with a shared secret, RS256/ES256 with a public key
// or a JWKS file) and, optionally, players' HS256 identity tokens.
package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchboard/switchboard/messages"
)

// Config says which tokens are accepted. Empty fields disable their part.
type Config struct {
	// OperatorSecret enables HS256 operator tokens.
	OperatorSecret string
	// OperatorPublicKeyFile (PEM) or OperatorJWKSFile enable RS256/ES256.
	OperatorPublicKeyFile string
	OperatorJWKSFile      string
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string
	Audience string
	// ClientSecret enables HS256 player identity tokens.
	ClientSecret string
	// Leeway tolerates clock skew on exp and nbf.
	Leeway time.Duration
	// AllowNoExp accepts tokens without an exp claim. Off, the default, a
	// token must say when it expires: one that does not is valid for as
	// long as its key is, leaked or not.
	AllowNoExp bool
}

// Verifier checks tokens. It is immutable after New and safe to share.
type Verifier struct {
	cfg          Config
	operatorKeys []crypto.PublicKey
	operator     *jwt.Parser
	client       *jwt.Parser
}

// ErrNoToken is returned for an empty token.
var ErrNoToken = errors.New("no token")

// ErrNoExp is returned for a token without an exp claim, unless
// Config.AllowNoExp.
var ErrNoExp = errors.New("token has no exp claim")

// New loads the configured keys.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{cfg: cfg}
	if cfg.ClientSecret != "" && cfg.ClientSecret == cfg.OperatorSecret {
		return nil, errors.New("the client secret must differ from the operator secret, or player tokens would pass as operators'")
	}
	if cfg.OperatorPublicKeyFile != "" {
		k, err := loadPEM(cfg.OperatorPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("public key %s: %w", cfg.OperatorPublicKeyFile, err)
		}
		v.operatorKeys = append(v.operatorKeys, k)
	}
	if cfg.OperatorJWKSFile != "" {
		ks, err := loadJWKS(cfg.OperatorJWKSFile)
		if err != nil {
			return nil, fmt.Errorf("JWKS %s: %w", cfg.OperatorJWKSFile, err)
		}
		v.operatorKeys = append(v.operatorKeys, ks...)
	}
	// Strict base64url: the last character of a signature carries spare
	// bits, and a lenient decoder reads a token with them changed as the
	// same token. Node's jsonwebtoken compares the signature as a string and
	// refuses it; so do we.
	opts := []jwt.ParserOption{jwt.WithLeeway(cfg.Leeway), jwt.WithIssuedAt(), jwt.WithStrictDecoding()}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	var methods []string
	if cfg.OperatorSecret != "" {
		methods = append(methods, "HS256")
	}
	if len(v.operatorKeys) > 0 {
		methods = append(methods, "RS256", "ES256")
	}
	if len(methods) > 0 {
		v.operator = jwt.NewParser(append(opts, jwt.WithValidMethods(methods))...)
	}
	if cfg.ClientSecret != "" {
		v.client = jwt.NewParser(append(opts, jwt.WithValidMethods([]string{"HS256"}))...)
	}
	return v, nil
}

// OperatorsConfigured reports whether operator tokens can be verified.
func (v *Verifier) OperatorsConfigured() bool { return v != nil && v.operator != nil }

// ClientsConfigured reports whether player tokens can be verified.
func (v *Verifier) ClientsConfigured() bool { return v != nil && v.client != nil }

// claims are the fields Switchboard reads from a token.
type claims struct {
	jwt.RegisteredClaims
	Role       string `json:"role,omitempty"`
	OperatorID any    `json:"operatorId,omitempty"`
	Name       string `json:"name,omitempty"`
	Username   string `json:"username,omitempty"`
	Phone      string `json:"phone,omitempty"`
	// MaxChats sets an operator's capacity under routing (claim and auto).
	MaxChats int `json:"maxChats,omitempty"`
}

// Verify returns who a token proves its bearer to be: an operator when it
// verifies with an operator key, a client when with the client secret.
func (v *Verifier) Verify(token string) (*messages.Identity, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	var opErr error
	if v.operator != nil {
		var c claims
		_, err := v.operator.ParseWithClaims(token, &c, v.operatorKey)
		if err == nil && c.Role != "client" {
			if err := v.expires(&c); err != nil {
				return nil, err
			}
			return operatorIdentity(&c)
		}
		opErr = err
	}
	if v.client != nil {
		var c claims
		if _, err := v.client.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return []byte(v.cfg.ClientSecret), nil }); err == nil {
			if err := v.expires(&c); err != nil {
				return nil, err
			}
			id := &messages.Identity{Role: messages.RoleClient, Subject: c.Subject}
			if c.Username != "" {
				id.Username = messages.S(c.Username)
			}
			if c.Phone != "" {
				id.Phone = messages.S(c.Phone)
			}
			if c.Name != "" {
				id.Name = messages.S(c.Name)
			}
			return id, nil
		} else if opErr == nil {
			opErr = err
		}
	}
	if opErr == nil {
		opErr = errors.New("no verification is configured")
	}
	return nil, fmt.Errorf("invalid token: %w", opErr)
}

// expires refuses a verified token without exp (the parser checks exp only
// when it is present).
func (v *Verifier) expires(c *claims) error {
	if c.ExpiresAt == nil && !v.cfg.AllowNoExp {
		return fmt.Errorf("invalid token: %w", ErrNoExp)
	}
	return nil
}

func operatorIdentity(c *claims) (*messages.Identity, error) {
	id := &messages.Identity{Role: messages.RoleOperator}
	switch v := c.OperatorID.(type) {
	case float64:
		id.OperatorID = messages.ID{Num: v, Kind: messages.IDNumber}
	case string:
		id.OperatorID = messages.ID{Str: v, Kind: messages.IDString}
	}
	if id.OperatorID.Kind == messages.IDAbsent && c.Subject != "" {
		id.OperatorID = messages.ID{Str: c.Subject, Kind: messages.IDString}
	}
	if id.OperatorID.Kind == messages.IDAbsent {
		return nil, errors.New("invalid token: no sub or operatorId claim")
	}
	if c.Name != "" {
		id.Name = messages.S(c.Name)
	}
	if c.MaxChats > 0 {
		id.MaxChats = c.MaxChats
	}
	return id, nil
}

func (v *Verifier) operatorKey(t *jwt.Token) (any, error) {
	if t.Method.Alg() == "HS256" {
		if v.cfg.OperatorSecret == "" {
			return nil, errors.New("HS256 is not configured")
		}
		return []byte(v.cfg.OperatorSecret), nil
	}
	ks := jwt.VerificationKeySet{}
	for _, k := range v.operatorKeys {
		ks.Keys = append(ks.Keys, k)
	}
	return ks, nil
}

func loadPEM(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

// loadJWKS reads the RSA and EC P-256 keys of a JWKS document.
func loadJWKS(path string) ([]crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Keys []struct {
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			N   string `json:"n"`
			E   string `json:"e"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	var keys []crypto.PublicKey
	for i, k := range doc.Keys {
		switch k.Kty {
		case "RSA":
			n, e := b64int(k.N), b64int(k.E)
			if n == nil || e == nil {
				return nil, fmt.Errorf("key %d: bad n or e", i)
			}
			keys = append(keys, &rsa.PublicKey{N: n, E: int(e.Int64())})
		case "EC":
			if k.Crv != "P-256" {
				return nil, fmt.Errorf("key %d: curve %q (only P-256, for ES256)", i, k.Crv)
			}
			x, errX := base64.RawURLEncoding.DecodeString(k.X)
			y, errY := base64.RawURLEncoding.DecodeString(k.Y)
			if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("key %d: bad x or y", i)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			keys = append(keys, pub)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no RSA or EC key")
	}
	return keys, nil
}

func b64int(s string) *big.Int {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil
	}
	return new(big.Int).SetBytes(b)
}
