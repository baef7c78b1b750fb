package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/roomfeed/roomfeed/api"
)

// TestWebConfig: GET /config.json tells the web app where the API and its
// tokens are, from the server's settings, so one build works anywhere.
func TestWebConfig(t *testing.T) {
	tests := []struct {
		name   string
		client api.WebClient
		want   map[string]string
	}{
		{"nothing set: the app's defaults", api.WebClient{}, map[string]string{}},
		{"both set", api.WebClient{ServerURL: "https://feeds.example", TokenEndpoint: "https://app.example/auth/token"},
			map[string]string{"serverUrl": "https://feeds.example", "tokenEndpoint": "https://app.example/auth/token"}},
		{"only the token endpoint", api.WebClient{TokenEndpoint: "/auth/token"}, map[string]string{"tokenEndpoint": "/auth/token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, backends[0], serverOpts{cfg: api.Config{WebClient: tt.client}})
			resp, err := http.Get(ts.URL + "/config.json")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status: got %d, want 200", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json; charset=utf-8" {
				t.Errorf("Content-Type: got %q, want application/json", got)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control: got %q, want no-cache", got)
			}
			raw, _ := io.ReadAll(resp.Body)
			got := map[string]string{}
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("body %s: %v", raw, err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("body: got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: got %q, want %q", k, got[k], v)
				}
			}
		})
	}

	t.Run("other methods are 405 with the JSON error", func(t *testing.T) {
		ts := newServer(t, backends[0], serverOpts{})
		resp, err := http.Post(ts.URL+"/config.json", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusMethodNotAllowed || body.Error.Code != "method_not_allowed" {
			t.Errorf("got %d %q, want 405 method_not_allowed", resp.StatusCode, body.Error.Code)
		}
	})
}
