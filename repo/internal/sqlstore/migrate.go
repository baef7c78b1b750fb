package sqlstore

import (
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/roomfeed/roomfeed/migrations"
)

// Migrate applies the migrations of directory dir of migrations.FS with
// drv, registered as driverName, and closes drv (which closes its *sql.DB).
func Migrate(dir, driverName string, drv database.Driver) error {
	src, err := iofs.New(migrations.FS, dir)
	if err != nil {
		drv.Close()
		return fmt.Errorf("migrate: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, driverName, drv)
	if err != nil {
		src.Close()
		drv.Close()
		return fmt.Errorf("migrate: %w", err)
	}
	err = m.Up()
	srcErr, dbErr := m.Close()
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := errors.Join(srcErr, dbErr); err != nil {
		return fmt.Errorf("migrate: close: %w", err)
	}
	return nil
}
