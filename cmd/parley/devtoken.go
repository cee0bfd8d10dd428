package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/auth"
)

// devTokenPath is where `parley dev` hands out access tokens.
const devTokenPath = "/dev/token"

// Bounds of the ttl a caller of the dev token endpoint may ask for.
const (
	devTokenDefaultTTL = time.Hour
	devTokenMaxTTL     = 24 * time.Hour
)

// devSession is the dev token endpoint's answer. Its fields are named as in
// a Supabase Auth session, so a client written against supabase-js's
// session reads it unchanged.
type devSession struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	// ExpiresIn is the token's lifetime in seconds, ExpiresAt its expiry
	// in Unix seconds.
	ExpiresIn int64       `json:"expires_in"`
	ExpiresAt int64       `json:"expires_at"`
	User      devUserInfo `json:"user"`
}

type devUserInfo struct {
	ID string `json:"id"`
}

// devTokenHandler serves GET /dev/token: a fresh access token signed with
// the dev key, for the dev user or for ?sub=<uuid>, valid ?ttl= (a Go
// duration, 1s to 24h; 1h by default). ?anonymous=true signs an anonymous
// sign-in; ?expired=true signs a token that expired an hour ago, so a
// client's refresh on `unauthenticated` can be exercised. It answers
// loopback callers only: anyone who can reach it can be any user of the
// dev database. Loopback means all of: a loopback peer, a Host header
// naming a loopback address or localhost (so a DNS-rebound page on another
// name is refused), no proxy forwarding headers (so a tunnel such as ngrok
// or ssh -R is refused), and, from a browser, an Origin that CORS allows.
func devTokenHandler(key *auth.DevKey, allowedOrigins []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !fromLoopback(r) {
			http.Error(w, "the dev token endpoint answers loopback callers only", http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !slices.Contains(allowedOrigins, o) {
			http.Error(w, "the dev token endpoint answers pages from ALLOWED_ORIGINS only", http.StatusForbidden)
			return
		}
		q := r.URL.Query()
		sub := devUserID
		if s := q.Get("sub"); s != "" {
			id, err := uuid.Parse(s)
			if err != nil {
				http.Error(w, "sub must be a user UUID", http.StatusBadRequest)
				return
			}
			sub = id
		}
		ttl := devTokenDefaultTTL
		if s := q.Get("ttl"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < time.Second || d > devTokenMaxTTL {
				http.Error(w, "ttl must be a duration from 1s to 24h, such as 15m", http.StatusBadRequest)
				return
			}
			ttl = d
		}
		anonymous, err1 := boolParam(q.Get("anonymous"))
		expired, err2 := boolParam(q.Get("expired"))
		if err1 != nil || err2 != nil {
			http.Error(w, "anonymous and expired must be true or false", http.StatusBadRequest)
			return
		}
		iat := time.Now()
		var token string
		var err error
		switch {
		case expired:
			iat = iat.Add(-ttl - time.Hour)
			token, err = key.SignIssuedAt(devIssuer, sub, iat, ttl)
		case anonymous:
			token, err = key.SignAnonymous(devIssuer, sub, ttl)
		default:
			token, err = key.Sign(devIssuer, sub, ttl)
		}
		if err != nil {
			http.Error(w, "signing failed", http.StatusInternalServerError)
			return
		}
		exp := iat.Add(ttl)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(devSession{
			AccessToken: token,
			TokenType:   "bearer",
			ExpiresIn:   int64(time.Until(exp).Seconds()),
			ExpiresAt:   exp.Unix(),
			User:        devUserInfo{ID: sub.String()},
		})
	})
}

func boolParam(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	return strconv.ParseBool(s)
}

// fromLoopback reports whether the request came from this machine,
// addressed to this machine, and through no proxy.
func fromLoopback(r *http.Request) bool {
	if r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("X-Forwarded-Host") != "" {
		return false
	}
	return isLoopbackHost(r.RemoteAddr, true) && isLoopbackHost(r.Host, false)
}

// isLoopbackHost reports whether hostport (the port optional unless
// needPort) names a loopback address or localhost.
func isLoopbackHost(hostport string, needPort bool) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		if needPort {
			return false
		}
		host = strings.Trim(hostport, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
