package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// requestLog writes one line per request. The query string is left out: it
// may carry cursors today and tokens tomorrow.
func (s *Server) requestLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	level := slog.LevelInfo
	attrs := []slog.Attr{
		slog.String("method", c.Request.Method),
		slog.String("path", c.Request.URL.Path),
		slog.Int("status", c.Writer.Status()),
		slog.Int("bytes", c.Writer.Size()),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", c.ClientIP()),
	}
	if errs := c.Errors.ByType(gin.ErrorTypeAny); len(errs) > 0 {
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", errs.String()))
	}
	s.logger.LogAttrs(c.Request.Context(), level, "request", attrs...)
}

// recovery turns a panic in a handler into a 500 JSON answer and an error
// line, except for http.ErrAbortHandler, which is re-raised.
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		err := fmt.Errorf("panic: %v", v)
		if c.Writer.Written() {
			_ = c.Error(err)
			c.Abort()
			return
		}
		writeError(c, err)
	}()
	c.Next()
}

const (
	corsAllowHeaders  = "Content-Type, If-Match, If-None-Match, Op-ID, Idempotency-Key, Last-Event-ID, Authorization"
	corsExposeHeaders = "ETag, Event-ID, Retry-After, Merged-From, Idempotent-Replayed"
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
)

// cors answers browsers from allowed origins. Origins are matched exactly
// against the configured allowlist; "*" is never sent, since credentials
// (cookies) may be used.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	c.Writer.Header().Add("Vary", "Origin")
	allowed := origin != "" && slices.Contains(s.cfg.CORSOrigins, strings.TrimRight(origin, "/"))
	if allowed {
		h := c.Writer.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	}
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		if allowed {
			h := c.Writer.Header()
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", "600")
		}
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}
