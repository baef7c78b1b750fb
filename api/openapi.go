package api

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPIDocument is the OpenAPI 3.1 description of the HTTP API. Its test
// checks that every route of the router is in it and that its examples
// match its schemas and the server's real answers.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPI serves the API description at GET /openapi.json.
func (s *Server) openAPI(c *gin.Context) {
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "application/json", openAPIDocument)
}
