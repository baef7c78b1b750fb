package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/client"
)

// selfSigned writes a certificate for 127.0.0.1 and localhost and its key
// as PEM files, and returns them with a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "roomfeed test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestHTTP2ManyFeedsOneConnection serves over TLS and opens more feeds than
// HTTP/1.1's six connections per origin allow, all at once, over one HTTP/2
// connection; every feed gets its room's event.
func TestHTTP2ManyFeedsOneConnection(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	n := startNode(t, "--database-url", "sqlite://"+filepath.Join(t.TempDir(), "rf.db"),
		"--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(n.URL, "https://") {
		t.Fatalf("node URL %s, want https://", n.URL)
	}
	var dials atomic.Int32
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const feeds = 10
	open := make([]*client.Stream, feeds)
	for i := range feeds {
		st, err := (&client.Client{HTTPClient: hc}).Dial(ctx, n.URL+"/rooms/h2-"+strconv.Itoa(i)+"/events", "0")
		if err != nil {
			t.Fatalf("feed %d: %v", i, err)
		}
		defer st.Close()
		if st.Response.ProtoMajor != 2 {
			t.Fatalf("feed %d: got %s, want HTTP/2", i, st.Response.Proto)
		}
		open[i] = st
	}
	// Every feed is open at the same time; now each room gets an event.
	for i := range feeds {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, n.URL+"/rooms/h2-"+strconv.Itoa(i)+"/elements/e",
			strings.NewReader(`{"kind":"item","data":{"feed":`+strconv.Itoa(i)+`}}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || resp.ProtoMajor != 2 {
			t.Fatalf("write %d: got %d over %s, want 201 over HTTP/2", i, resp.StatusCode, resp.Proto)
		}
	}
	for i, st := range open {
		got := make(chan string, 1)
		go func() {
			ev, err := st.Next()
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- ev.Data
		}()
		select {
		case data := <-got:
			if !strings.Contains(data, `"room":"h2-`+strconv.Itoa(i)+`"`) || !strings.Contains(data, `{"feed":`+strconv.Itoa(i)+`}`) {
				t.Errorf("feed %d: got %q, want its room's event", i, data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("feed %d: no event within 10s", i)
		}
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("opened %d connections, want every feed and write on one HTTP/2 connection", d)
	}
	cancel()
}

// TestTLSConfig: the certificate and key go together and must load.
func TestTLSConfig(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"cert without key", []string{"--tls-cert", certFile}, "set together"},
		{"key without cert", []string{"--tls-key", keyFile}, "set together"},
		{"swapped files", []string{"--tls-cert", keyFile, "--tls-key", certFile}, "ROOMFEED_TLS_CERT"},
		{"missing file", []string{"--tls-cert", certFile + ".nope", "--tls-key", keyFile}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, func(string) string { return "" }, &strings.Builder{})
			if err == nil {
				_, err = cfg.tlsConfig()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
	cfg, err := parseConfig(nil, func(k string) string {
		return map[string]string{"ROOMFEED_TLS_CERT": certFile, "ROOMFEED_TLS_KEY": keyFile}[k]
	}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cfg.tlsConfig()
	if err != nil || tc == nil || tc.MinVersion != tls.VersionTLS12 || tc.NextProtos[0] != "h2" {
		t.Fatalf("from the environment: got %+v, %v; want TLS 1.2+ offering h2", tc, err)
	}
}
