package main

// HTTPS: with ROOMFEED_TLS_CERT and ROOMFEED_TLS_KEY the service speaks TLS
// and negotiates HTTP/2, so a browser multiplexes all its feeds over one
// connection instead of hitting HTTP/1.1's six connections per origin.

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
)

// tlsConfig loads the certificate and key, or returns nil when TLS is off.
// A renewed certificate is picked up by a (rolling) restart: nodes are
// stateless and clients resume from their cursor.
func (c config) tlsConfig() (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("ROOMFEED_TLS_CERT/ROOMFEED_TLS_KEY: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// serve serves HTTP, or HTTPS with HTTP/2 from srv.TLSConfig. (Serve may
// set a TLSConfig of its own, so the caller says which.)
func serve(srv *http.Server, ln net.Listener, useTLS bool) error {
	if useTLS {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

func scheme(tc *tls.Config) string {
	if tc != nil {
		return "https"
	}
	return "http"
}
