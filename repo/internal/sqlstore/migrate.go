package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/roomfeed/roomfeed/migrations"
)

// Migrations are a dialect's migrations: the database/sql driver and the
// pool size they run with, their directory of migrations.FS, and the
// golang-migrate driver (its name, and how it wraps the pool).
type Migrations struct {
	SQLDriver  string
	Conns      int
	Dir        string
	DriverName string
	Driver     func(*sql.DB) (database.Driver, error)
}

// Up migrates the database of dsn to the latest version, on a pool of its
// own that it closes.
func (m Migrations) Up(ctx context.Context, dsn string) error {
	db, err := sql.Open(m.SQLDriver, dsn)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(m.Conns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return err
	}
	drv, err := m.Driver(db)
	if err != nil {
		db.Close()
		return fmt.Errorf("migrate: %w", err)
	}
	return run(m.Dir, m.DriverName, drv)
}

// run applies the migrations of dir with drv, registered as driverName,
// and closes drv (which closes its *sql.DB).
func run(dir, driverName string, drv database.Driver) error {
	src, err := iofs.New(migrations.FS, dir)
	if err != nil {
		drv.Close()
		return fmt.Errorf("migrate: %w", err)
	}
	mg, err := migrate.NewWithInstance("iofs", src, driverName, drv)
	if err != nil {
		src.Close()
		drv.Close()
		return fmt.Errorf("migrate: %w", err)
	}
	err = mg.Up()
	srcErr, dbErr := mg.Close()
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := errors.Join(srcErr, dbErr); err != nil {
		return fmt.Errorf("migrate: close: %w", err)
	}
	return nil
}
