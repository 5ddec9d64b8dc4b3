package main

import "testing"

// TestReviewTLSCAWithHTTPAddress: --tls-ca asks for TLS; an http:// address
// (typed, or from RAYHOST_ADDRESS) must not silently send the token in
// clear text instead.
func TestReviewTLSCAWithHTTPAddress(t *testing.T) {
	got, err := normalizeAddress("http://10.0.0.1:6380", true)
	if err == nil {
		t.Fatalf("normalizeAddress(http://..., tls) = %q, nil: --tls-ca was given but the call (and its token) would go in clear text", got)
	}
	if !isUsageError(err) {
		t.Fatalf("want a usage error, got %v", err)
	}
	t.Logf("refused: %v", err)
	if got, err := normalizeAddress("https://10.0.0.1", true); err != nil || got != "https://10.0.0.1:6380" {
		t.Fatalf("https with --tls-ca: %q, %v", got, err)
	}
}
