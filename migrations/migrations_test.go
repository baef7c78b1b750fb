package migrations

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
)

// TestFS checks that both dialects carry the same migrations, each with an
// up and a down file.
func TestFS(t *testing.T) {
	names := map[string][]string{}
	for _, dialect := range []string{"sqlite", "postgres"} {
		entries, err := fs.ReadDir(FS, dialect)
		if err != nil {
			t.Fatalf("read %s: %v", dialect, err)
		}
		for _, e := range entries {
			names[dialect] = append(names[dialect], e.Name())
		}
		if len(names[dialect]) == 0 || len(names[dialect])%2 != 0 {
			t.Errorf("%s: got files %v, want up/down pairs", dialect, names[dialect])
		}
		for _, n := range names[dialect] {
			if !strings.HasSuffix(n, ".up.sql") && !strings.HasSuffix(n, ".down.sql") {
				t.Errorf("%s: got file %s, want *.up.sql or *.down.sql", dialect, n)
			}
		}
	}
	if !slices.Equal(names["sqlite"], names["postgres"]) {
		t.Errorf("got sqlite %v and postgres %v, want the same migrations", names["sqlite"], names["postgres"])
	}
}
