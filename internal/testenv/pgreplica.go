package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostgresPair is a throwaway PostgreSQL primary with one streaming
// replica, started from the installed server binaries on free loopback
// ports, in a temporary directory removed when the test ends. As root the
// servers run as the postgres user (initdb refuses root). The replica
// streams through Replication, a proxy the test can stall to hold the
// replica back.
type PostgresPair struct {
	tb          testing.TB
	bin         string // directory of initdb, pg_ctl, postgres...
	dir         string
	cred        *syscall.Credential // nil: run as the current user
	Primary     *PostgresServer
	Replica     *PostgresServer
	Replication *Proxy
}

// PostgresServer is one server of a PostgresPair.
type PostgresServer struct {
	Name string
	Port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Addr is the server's "127.0.0.1:port".
func (s *PostgresServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is a connection URL of the server's postgres database.
func (s *PostgresServer) URL() string {
	return "postgres://postgres@" + s.Addr() + "/postgres?sslmode=disable"
}

// StartPostgresPair starts the primary and the replica and waits until the
// replica streams. With sync, the primary commits only once the replica
// has flushed the commit (synchronous_standby_names names it,
// synchronous_commit=on); the replica is configured with no synchronous
// standby of its own, so that once promoted it commits alone. Without the
// binaries (/usr/lib/postgresql/*/bin) the test is skipped, or fails under
// CI.
func StartPostgresPair(tb testing.TB, sync bool) *PostgresPair {
	tb.Helper()
	p := &PostgresPair{tb: tb, bin: postgresBin(tb)}
	p.dir = p.tempDir()
	ports := freePorts(tb, 2)
	p.Primary = &PostgresServer{Name: "primary", Port: ports[0], dir: filepath.Join(p.dir, "primary")}
	p.Replica = &PostgresServer{Name: "replica", Port: ports[1], dir: filepath.Join(p.dir, "replica")}
	tb.Cleanup(func() {
		p.Kill(p.Primary)
		p.Kill(p.Replica)
		if tb.Failed() {
			for _, s := range []*PostgresServer{p.Primary, p.Replica} {
				out, _ := os.ReadFile(s.log)
				tb.Logf("%s log:\n%s", s.Name, tail(string(out), 4<<10))
			}
		}
		os.RemoveAll(p.dir)
	})
	p.run("initdb", "-D", p.Primary.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	standby := ""
	if sync {
		standby = "replica"
	}
	p.configure(p.Primary, fmt.Sprintf("synchronous_standby_names = '%s'\nsynchronous_commit = on\n", standby))
	p.start(p.Primary)
	p.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Primary.Port), "-U", "postgres",
		"-D", p.Replica.dir, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
	p.Replication = StartProxy(tb, p.Primary.Addr())
	_, proxyPort, _ := strings.Cut(p.Replication.Addr(), ":")
	p.configure(p.Replica, fmt.Sprintf("synchronous_standby_names = ''\nprimary_conninfo = 'host=127.0.0.1 port=%s user=postgres application_name=replica'\n",
		proxyPort))
	p.start(p.Replica)
	want := "streaming"
	if sync {
		want = "streaming sync"
	}
	p.waitQuery(p.Primary, `SELECT coalesce((SELECT state || CASE WHEN sync_state = 'sync' THEN ' sync' ELSE '' END
		FROM pg_stat_replication WHERE application_name = 'replica'), '')`, want, 30*time.Second)
	return p
}

// postgresBin finds the newest installed server's bin directory.
func postgresBin(tb testing.TB) string {
	tb.Helper()
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(found, func(a, b string) int { return versionOf(a) - versionOf(b) })
	if len(found) == 0 {
		unavailable(tb, "the PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)", os.ErrNotExist)
	}
	return filepath.Dir(found[len(found)-1])
}

func versionOf(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// tempDir makes the pair's directory, owned by the postgres user when the
// test runs as root (the servers then run as that user).
func (p *PostgresPair) tempDir() string {
	dir, err := os.MkdirTemp("", "roomfeed-pg-")
	if err != nil {
		p.tb.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return dir
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		os.RemoveAll(dir)
		unavailable(p.tb, "the postgres user (PostgreSQL refuses to run as root)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		p.tb.Fatal(err)
	}
	p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return dir
}

// command is name from the server's bin directory, as the servers' user.
func (p *PostgresPair) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = p.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + p.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs a command to its end, failing the test if it fails.
func (p *PostgresPair) run(name string, args ...string) {
	p.tb.Helper()
	if out, err := p.command(name, args...).CombinedOutput(); err != nil {
		p.tb.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// configure appends settings to the server's postgresql.auto.conf, after
// the ones every server of a pair has.
func (p *PostgresPair) configure(s *PostgresServer, extra string) {
	p.tb.Helper()
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"+
		"wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\nmax_connections = 60\n"+
		"shared_buffers = 16MB\nwal_receiver_status_interval = 1s\n%s", s.Port, p.dir, extra)
	f, err := os.OpenFile(filepath.Join(s.dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		p.tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(conf); err != nil {
		p.tb.Fatal(err)
	}
}

// start runs the server as a child process (so it dies with the test) and
// waits until it accepts connections.
func (p *PostgresPair) start(s *PostgresServer) {
	p.tb.Helper()
	s.log = filepath.Join(p.dir, s.Name+".log")
	out, err := os.Create(s.log)
	if err != nil {
		p.tb.Fatal(err)
	}
	s.cmd = p.command("postgres", "-D", s.dir)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	err = s.cmd.Start()
	out.Close()
	if err != nil {
		p.tb.Fatalf("start %s: %v", s.Name, err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	p.waitQuery(s, `SELECT 'up'`, "up", 30*time.Second)
}

// waitQuery polls query on s until it returns want.
func (p *PostgresPair) waitQuery(s *PostgresServer, query, want string, timeout time.Duration) {
	p.tb.Helper()
	db, err := sql.Open("pgx", s.URL()+"&connect_timeout=2")
	if err != nil {
		p.tb.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var got string
		err := db.QueryRowContext(ctx, query).Scan(&got)
		cancel()
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.log)
			p.tb.Fatalf("%s: %q answered %q, %v; want %q within %v\n%s", s.Name, query, got, err, want, timeout, tail(string(out), 4<<10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill crashes the server: SIGKILL to the postmaster and every process it
// started, as a power cut would stop them (but the files written so far
// stay). Killing a stopped server does nothing.
func (p *PostgresPair) Kill(s *PostgresServer) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	children := childrenOf(s.cmd.Process.Pid)
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	for _, pid := range children {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-s.done
	s.cmd = nil
}

// Promote makes the replica a primary (pg_ctl promote, waiting until it
// accepts writes).
func (p *PostgresPair) Promote() {
	p.tb.Helper()
	p.run("pg_ctl", "promote", "-w", "-t", "60", "-D", p.Replica.dir)
	p.waitQuery(p.Replica, `SELECT CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END`, "primary", 30*time.Second)
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}
