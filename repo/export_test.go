package repo

import (
	"github.com/roomfeed/roomfeed/repo/postgres"
	"github.com/roomfeed/roomfeed/repo/sqlite"
)

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string {
	switch s.db.(type) {
	case *sqlite.DB:
		return "sqlite"
	case *postgres.DB:
		return "postgres"
	}
	return ""
}
