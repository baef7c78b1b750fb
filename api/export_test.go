package api

import "github.com/gin-gonic/gin"

// Routes lists the registered method and path pairs.
func (s *Server) Routes() gin.RoutesInfo { return s.router.Routes() }

// NewPublicKeyVerifier verifies tokens signed by the private halves of the
// PEM-encoded public keys (ParsePEMKeys).
func NewPublicKeyVerifier(pemData []byte) (*Verifier, error) {
	keys, err := ParsePEMKeys(pemData)
	if err != nil {
		return nil, err
	}
	return NewVerifier(keys)
}

// Algorithms are the JWT algorithms v accepts now, sorted.
func (v *Verifier) Algorithms() []string { return algorithms(v.set.Load().keys) }
