package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// DevKeyFile is the name of the dev signing key inside the directory given
// to LoadOrCreateDevKey.
const DevKeyFile = "dev-signing-key.pem"

// DevKey is a local ES256 signing key that stands in for Supabase Auth in
// development: it signs tokens shaped like Supabase's and publishes its public
// half as a JWK Set for NewStaticVerifier, so dev runs the production checks.
type DevKey struct {
	private *ecdsa.PrivateKey
	kid     string // its RFC 7638 thumbprint
	jwks    []byte
}

// LoadOrCreateDevKey loads the key in dir/dev-signing-key.pem, creating dir
// and a new P-256 key (PKCS#8 PEM, mode 0600) if there is none, so tokens
// minted before a restart keep verifying after it.
func LoadOrCreateDevKey(dir string) (*DevKey, error) {
	path := filepath.Join(dir, DevKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createDevKey(dir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read dev key: %w", err)
	}
	return parseDevKey(path, data)
}

func createDevKey(dir, path string) (*DevKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: create dev key dir: %w", err)
	}
	private, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth: generate dev key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("auth: encode dev key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	// O_EXCL: if another process created the key meanwhile, use theirs rather
	// than overwrite it and invalidate the tokens it already signed.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateDevKey(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: create dev key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("auth: write dev key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("auth: write dev key: %w", err)
	}
	return newDevKey(private)
}

// parseDevKey accepts PKCS#8 (what we write) and SEC 1 (what
// `openssl ecparam -genkey` writes) so a developer can bring their own key.
func parseDevKey(path string, data []byte) (*DevKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("auth: %s holds no PEM block", path)
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("auth: %s: unexpected PEM block %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: %s: %w", path, err)
	}
	private, ok := key.(*ecdsa.PrivateKey)
	if !ok || private.Curve != elliptic.P256() {
		return nil, fmt.Errorf("auth: %s is not a P-256 (ES256) key", path)
	}
	return newDevKey(private)
}

// ecJWK is a public EC key as a JWK. Field order follows RFC 7638 so the
// thumbprint input can be produced by marshaling the required members alone.
type ecJWK struct {
	Crv string `json:"crv"`
	Kty string `json:"kty"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
}

func newDevKey(private *ecdsa.PrivateKey) (*DevKey, error) {
	point, err := private.PublicKey.Bytes() // 0x04 || X || Y, 32 bytes each
	if err != nil {
		return nil, fmt.Errorf("auth: dev key: %w", err)
	}
	jwk := ecJWK{
		Crv: "P-256",
		Kty: "EC",
		X:   base64.RawURLEncoding.EncodeToString(point[1:33]),
		Y:   base64.RawURLEncoding.EncodeToString(point[33:]),
	}
	// RFC 7638: SHA-256 over the required members in lexicographic order
	// with no whitespace; the kid then changes only if the key does.
	thumbprintInput, err := json.Marshal(jwk)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(thumbprintInput)
	jwk.Kid = base64.RawURLEncoding.EncodeToString(sum[:])
	jwk.Alg = jwt.SigningMethodES256.Alg()
	jwk.Use = "sig"
	jwks, err := json.Marshal(struct {
		Keys []ecJWK `json:"keys"`
	}{Keys: []ecJWK{jwk}})
	if err != nil {
		return nil, err
	}
	return &DevKey{private: private, kid: jwk.Kid, jwks: jwks}, nil
}

// JWKS returns the public JWK Set, {"keys":[...]}, for NewStaticVerifier or
// to serve at a dev JWKS endpoint. The caller may modify the returned slice.
func (k *DevKey) JWKS() []byte { return slices.Clone(k.jwks) }

// Sign returns an access token for user sub shaped like Supabase's: iss, sub,
// aud and role "authenticated", iat, exp = now+ttl, a fresh session_id and
// the kid header. It has no email; see SignWithEmail.
func (k *DevKey) Sign(issuer string, sub uuid.UUID, ttl time.Duration) (string, error) {
	return k.SignWithEmail(issuer, sub, "", ttl)
}

// SignWithEmail is Sign with an "email" claim (omitted when empty).
func (k *DevKey) SignWithEmail(issuer string, sub uuid.UUID, email string, ttl time.Duration) (string, error) {
	return k.sign(issuer, sub, email, false, time.Now(), ttl)
}

// SignIssuedAt is Sign as if the token had been issued at iat, so that exp
// is iat+ttl: with iat far enough in the past it returns an expired token,
// which is how clients' token refresh is tested.
func (k *DevKey) SignIssuedAt(issuer string, sub uuid.UUID, iat time.Time, ttl time.Duration) (string, error) {
	return k.sign(issuer, sub, "", false, iat, ttl)
}

// SignAnonymous is Sign for an anonymous sign-in: "is_anonymous" true and
// no email, as Supabase writes it for signInAnonymously.
func (k *DevKey) SignAnonymous(issuer string, sub uuid.UUID, ttl time.Duration) (string, error) {
	return k.sign(issuer, sub, "", true, time.Now(), ttl)
}

// SignClaims signs arbitrary claims with the dev key (ES256, its kid), for
// tokens Supabase issues that are not user sessions, such as the anon and
// service_role API keys, which tests present to prove they are refused.
func (k *DevKey) SignClaims(claims map[string]any) (string, error) {
	token := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims(claims))
	token.Header["kid"] = k.kid
	signed, err := token.SignedString(k.private)
	if err != nil {
		return "", fmt.Errorf("auth: sign dev token: %w", err)
	}
	return signed, nil
}

func (k *DevKey) sign(issuer string, sub uuid.UUID, email string, anonymous bool, now time.Time, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", errors.New("auth: token ttl must be positive")
	}
	// MapClaims rather than tokenClaims so "aud" is a bare string, as
	// Supabase writes it; the verifier accepts the array form as well.
	claims := jwt.MapClaims{
		"iss":          issuer,
		"sub":          sub.String(),
		"aud":          defaultAudience,
		"role":         requiredRole,
		"iat":          now.Unix(),
		"exp":          now.Add(ttl).Unix(),
		"session_id":   uuid.NewString(),
		"aal":          "aal1",
		"is_anonymous": anonymous,
	}
	if email != "" {
		claims["email"] = email
	}
	return k.SignClaims(claims)
}
