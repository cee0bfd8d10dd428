package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func TestLoadOrCreateDevKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state") // not there yet: must be created
	first, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatalf("first LoadOrCreateDevKey: %v", err)
	}
	second, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatalf("second LoadOrCreateDevKey: %v", err)
	}
	if !first.private.Equal(second.private) || first.kid != second.kid {
		t.Error("second load returned a different key; dev tokens would not survive a restart")
	}
	if diff := cmp.Diff(string(first.JWKS()), string(second.JWKS())); diff != "" {
		t.Errorf("JWKS differs between loads (-first +second):\n%s", diff)
	}

	info, err := os.Stat(filepath.Join(dir, DevKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %o; want 600", perm)
	}
}

func TestDevKeyJWKS(t *testing.T) {
	t.Parallel()
	k, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(k.JWKS(), &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys; want 1", len(set.Keys))
	}
	jwk := set.Keys[0]
	for name, want := range map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": k.kid} {
		if jwk[name] != want {
			t.Errorf("JWK %s = %v; want %q", name, jwk[name], want)
		}
	}
	if _, ok := jwk["d"]; ok {
		t.Error("JWKS publishes the private key")
	}
	// RFC 7638 thumbprints of P-256 keys are 43 base64url characters.
	if len(k.kid) != 43 {
		t.Errorf("kid %q is not a SHA-256 thumbprint", k.kid)
	}
}

func TestDevKeySign(t *testing.T) {
	t.Parallel()
	k, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const iss = "http://127.0.0.1:54321/auth/v1"
	v, err := NewStaticVerifier(Config{Issuer: iss}, k.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	userID := uuid.New()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		token, err := k.SignWithEmail(iss, userID, "ada@example.com", 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got, err := verifyWithin(t, v, token, 5*time.Second)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if got.UserID != userID || got.Email != "ada@example.com" || got.Role != "authenticated" {
			t.Errorf("claims = %+v; want user %v, email ada@example.com, role authenticated", got, userID)
		}
		if _, err := uuid.Parse(got.SessionID); err != nil {
			t.Errorf("session_id %q is not a UUID", got.SessionID)
		}
		if until := time.Until(got.ExpiresAt); until <= 9*time.Minute || until > 10*time.Minute {
			t.Errorf("expires in %v; want about 10m", until)
		}
	})
	t.Run("ErrOtherDevKey", func(t *testing.T) {
		t.Parallel()
		other, err := LoadOrCreateDevKey(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		token, err := other.Sign(iss, userID, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifyWithin(t, v, token, 5*time.Second); err == nil {
			t.Error("token from another dev key verified")
		}
	})
	t.Run("ErrZeroTTL", func(t *testing.T) {
		t.Parallel()
		if _, err := k.Sign(iss, userID, 0); err == nil {
			t.Error("Sign with zero ttl succeeded")
		}
	})
}

func TestLoadOrCreateDevKeyExistingFile(t *testing.T) {
	t.Parallel()
	pemOf := func(tb testing.TB, key any) []byte {
		tb.Helper()
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"OKPKCS8", pemOf(t, p256), false},
		{"OKSEC1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), false},
		{"ErrNotPEM", []byte("not a key"), true},
		{"ErrP384", pemOf(t, p384), true},
		{"ErrRSA", pemOf(t, rsaKey), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, DevKeyFile), tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LoadOrCreateDevKey(dir)
			if tt.wantErr {
				if err == nil {
					t.Fatal("LoadOrCreateDevKey accepted the file; want an error (and no silent replacement)")
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadOrCreateDevKey: %v", err)
			}
			if !k.private.Equal(p256) {
				t.Error("loaded key differs from the one in the file")
			}
		})
	}
}
