package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// server is a process under test (roomfeed or the bare SSE broadcaster), or
// a running server given with --target (then pid may be 0: no CPU or RSS).
type server struct {
	name  string
	url   string // http://host:port
	debug string // http://host:port of its profiles (--debug-addr); "" = none
	pid   int
	cmd   *exec.Cmd
	log   *os.File
	done  chan struct{}
}

// startProcess runs bin with args, waits for its "listening on http://ADDR"
// line on stdout and returns the server. stderr goes to logPath. The child
// inherits this process's RLIMIT_NOFILE (raised in main).
func startProcess(ctx context.Context, name, bin string, args []string, logPath string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, pid: cmd.Process.Pid, cmd: cmd, log: logf, done: make(chan struct{})}
	addr, debug := make(chan string, 1), make(chan string, 1)
	lines := []struct {
		prefix string
		ch     chan string
	}{{"listening on ", addr}, {"debug on ", debug}}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			for _, l := range lines {
				if a, ok := strings.CutPrefix(sc.Text(), l.prefix); ok {
					select {
					case l.ch <- strings.TrimSpace(a):
					default:
					}
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	select {
	case a := <-addr:
		s.url = a
		if slices.Contains(args, "--debug-addr") {
			// The args asked for the profiles' listener (serverArgs adds
			// it with --profile); roomfeed prints its debug line right
			// after the first one.
			select {
			case s.debug = <-debug:
			case <-time.After(10 * time.Second):
				s.stop()
				return nil, fmt.Errorf("%s printed no debug address within 10 s", name)
			}
		}
		return s, nil
	case <-s.done:
		logf.Close()
		tail, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%s exited before listening: %s", name, lastLines(string(tail), 15))
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s did not print its address within 60 s", name)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop sends SIGTERM, waits for the process, and kills it after 15 s.
func (s *server) stop() {
	if s == nil || s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	waitOrKill(s.cmd.Process, s.done)
	s.log.Close()
}

// waitOrKill waits for p to end (done closed), and kills it if it is still
// there after 15 s.
func waitOrKill(p *os.Process, done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.Kill()
		<-done
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cpuSeconds returns the process's user+system CPU time from /proc/pid/stat.
func cpuSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	u, s, err := parseProcStat(string(b))
	if err != nil {
		return 0
	}
	return float64(u+s) / clockTicks
}

// writeCalls returns the number of write system calls (write, writev,
// sendmsg and the like) process pid made so far, from /proc/PID/io; 0 when
// it cannot be read.
func writeCalls(pid int) int64 {
	n, _ := strconv.ParseInt(procField(pid, "io", "syscw:"), 10, 64)
	return n
}

// procField returns the value after key on its line of /proc/PID/file,
// trimmed; "" when pid is not a process or the line is missing.
func procField(pid int, file, key string) string {
	if pid <= 0 {
		return ""
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// commandCPU returns the user+system CPU time of every process on this
// machine whose command name (/proc/pid/comm) is name: the backends of a
// local PostgreSQL ("postgres"), a local Redis ("redis-server"). A process
// that starts or ends between two readings counts only what it used while
// seen, so the difference of two readings is a lower bound.
func commandCPU(name string) float64 {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total float64
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		total += cpuSeconds(pid)
	}
	return total
}

// clockTicks is sysconf(_SC_CLK_TCK), 100 on every Linux architecture Go
// supports.
const clockTicks = 100

// parseProcStat returns utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line; the command name in parentheses may hold spaces.
func parseProcStat(line string) (utime, stime int64, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, errors.New("proc stat: no command")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 13 {
		return 0, 0, errors.New("proc stat: too few fields")
	}
	if utime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return 0, 0, err
	}
	if stime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return 0, 0, err
	}
	return utime, stime, nil
}

// rssKiB returns VmRSS of the process in KiB from /proc/pid/status.
func rssKiB(pid int) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(procField(pid, "status", "VmRSS:"), " kB"), 10, 64)
	return n
}

// selfCPU returns this process's user+system CPU seconds (the load generator).
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// loadAvg returns the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// backend prepares and removes the storage of one server run.
type backend struct {
	name     string // sqlite or postgres
	pgURL    string // base PostgreSQL URL (postgres backend)
	redisURL string

	// per run
	schema string
	prefix string
	dbPath string
}

var runSeq int

// args returns the roomfeed flags of a fresh run and prepares its storage:
// a new SQLite file, or a new PostgreSQL schema and a unique Redis prefix.
func (b *backend) args(ctx context.Context, dir string) ([]string, error) {
	runSeq++
	tag := fmt.Sprintf("rfbench_%d_%d", os.Getpid(), runSeq)
	switch b.name {
	case "sqlite":
		b.dbPath = filepath.Join(dir, tag+".db")
		return []string{"--database-url", "sqlite://" + b.dbPath}, nil
	case "postgres":
		if err := createSchema(ctx, b.pgURL, tag); err != nil {
			return nil, err
		}
		b.schema = tag
		b.prefix = tag + ":"
		return []string{
			"--database-url", inSchema(b.pgURL, tag),
			"--redis-url", b.redisURL,
			"--redis-prefix", b.prefix,
		}, nil
	}
	return nil, fmt.Errorf("unknown backend %q", b.name)
}

// createSchema creates the schema name in the database of pgURL.
func createSchema(ctx context.Context, pgURL, name string) error {
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

// dropSchema drops the schema name and everything in it, even once ctx is
// done; a failure is printed, not returned.
func dropSchema(ctx context.Context, pgURL, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: drop schema:", err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: drop schema:", err)
	}
}

// inSchema returns pgURL with its search_path set to schema, as roomfeed
// takes it (a run-time parameter its migrations run in too).
func inSchema(pgURL, schema string) string {
	sep := "?"
	if strings.Contains(pgURL, "?") {
		sep = "&"
	}
	return pgURL + sep + "search_path=" + schema
}

// cleanup removes what args made.
func (b *backend) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if b.dbPath != "" {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(b.dbPath + suffix)
		}
		b.dbPath = ""
	}
	if b.schema != "" {
		dropSchema(ctx, b.pgURL, b.schema)
		b.schema = ""
	}
	if b.prefix != "" {
		if rc, err := newRedis(b.redisURL); err == nil {
			if err := deleteRedisPrefix(ctx, rc, b.prefix); err != nil {
				fmt.Fprintln(os.Stderr, "bench: delete redis keys:", err)
			}
			rc.Close()
		}
		b.prefix = ""
	}
}

// available reports whether PostgreSQL and Redis answer.
func (b *backend) available(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.pgURL)
	if err != nil {
		return fmt.Errorf("postgres %s: %w", b.pgURL, err)
	}
	conn.Close(ctx)
	rc, err := newRedis(b.redisURL)
	if err != nil {
		return fmt.Errorf("redis %s: %w", b.redisURL, err)
	}
	defer rc.Close()
	return forEachRedisNode(ctx, rc, true, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
}
