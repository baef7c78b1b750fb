package api

import (
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/gin-gonic/gin"
)

const placeholderPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>roomfeed</title></head>
<body><h1>roomfeed</h1>
<p>The web app is not built. Run <code>make run</code> (it builds <code>web/</code> first)
or <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then restart.</p>
<p>The API works without it: <code>curl -N http://HOST/rooms/w1/events</code>.</p>
</body></html>
`

// WebClient is what the web app reads at run time from GET /config.json, so
// that one build of it works against any server: where the API is and where
// tokens come from. Empty fields mean the app's build-time defaults (the
// page's own origin, no token).
type WebClient struct {
	ServerURL     string `json:"serverUrl,omitempty"`     // the API's origin, e.g. https://feeds.example
	TokenEndpoint string `json:"tokenEndpoint,omitempty"` // URL answering {"token":"..."} for the signed-in user
}

// webConfig answers GET /config.json: the WebClient settings, never cached.
func (s *Server) webConfig(c *gin.Context) {
	c.Header("Cache-Control", "no-cache")
	c.JSON(http.StatusOK, s.cfg.WebClient)
}

// web serves the built web app for GET and HEAD requests outside the API,
// and a JSON 404 or 405 for everything else.
func (s *Server) web(c *gin.Context) {
	p := c.Request.URL.Path
	if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		writeError(c, errMethodNotAllowed)
		return
	}
	if strings.HasPrefix(p, "/rooms/") || p == "/rooms" {
		writeError(c, errRouteNotFound)
		return
	}
	if s.cfg.WebDir == "" {
		s.placeholder(c, p)
		return
	}
	clean := path.Clean("/" + p)
	file := filepath.Join(s.cfg.WebDir, filepath.FromSlash(clean))
	if info, err := os.Stat(file); err == nil && !info.IsDir() {
		if strings.HasPrefix(clean, "/assets/") {
			c.Header("Cache-Control", "public, max-age=31536000, immutable")
		}
		c.File(file)
		return
	}
	index := filepath.Join(s.cfg.WebDir, "index.html")
	if _, err := os.Stat(index); err != nil || path.Ext(clean) != "" {
		s.placeholder(c, p)
		return
	}
	c.Header("Cache-Control", "no-cache")
	c.File(index)
}

func (s *Server) placeholder(c *gin.Context, p string) {
	if p != "/" && p != "/index.html" {
		writeError(c, errRouteNotFound)
		return
	}
	c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(placeholderPage))
}
