package api

import (
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/sse"
)

// TestPageParamsLimit: a page's limit defaults to sse.DefaultPageLimit, and
// one above sse.MaxPageLimit is served as the bound, not refused; what is
// not a whole number from 1 is 400 bad_limit.
func TestPageParamsLimit(t *testing.T) {
	for _, tc := range []struct {
		query   string
		want    int
		wantErr bool
	}{
		{"", sse.DefaultPageLimit, false},
		{"limit=1", 1, false},
		{"limit=5000", sse.MaxPageLimit, false},
		{"limit=5001", sse.MaxPageLimit, false},
		{"limit=999999999", sse.MaxPageLimit, false},
		{"limit=0", 0, true},
		{"limit=-1", 0, true},
		{"limit=1e3", 0, true},
		{"limit=", 0, true},
		{"limit=18446744073709551616", 0, true},
		{"limit=10&limit=20", 0, true},
	} {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("GET", "/rooms/w1/events?format=json&"+tc.query, nil)
		_, got, err := pageParams(c, c.Request.URL.Query())
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("?%s: got %d, %v; want %d (error: %v)", tc.query, got, err, tc.want, tc.wantErr)
		}
	}
}
