package repo

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }
