package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster starts a throwaway Redis Cluster of masters (no replicas) on
// free loopback ports with the installed redis-server and redis-cli, waits
// until it serves every slot, and kills it when the test ends. It returns the
// masters' addresses ("127.0.0.1:port"). Without redis-server the test is
// skipped (or fails under CI), as for the other services.
func RedisCluster(tb testing.TB, masters int) []string {
	tb.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(tb, "redis-server (for a Redis Cluster)", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		unavailable(tb, "redis-cli (for a Redis Cluster)", err)
	}
	ports := freePorts(tb, 2*masters) // client ports, then cluster bus ports
	addrs := make([]string, masters)
	for i := range masters {
		dir := tb.TempDir()
		addrs[i] = startRedisServer(tb, server, ports[i], dir,
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(ports[masters+i]), "--cluster-node-timeout", "5000")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				c.Close()
				tb.Fatalf("cluster node %s: not cluster_state:ok after 60s (%v):\n%s", addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}

// RedisServer starts a throwaway standalone redis-server on a free loopback
// port, for tests that change server-wide state (SCRIPT FLUSH), and kills it
// when the test ends. It returns a client of it. Without redis-server the
// test is skipped (or fails under CI).
func RedisServer(tb testing.TB) *redis.Client {
	tb.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(tb, "redis-server (for a throwaway Redis)", err)
	}
	addr := startRedisServer(tb, server, freePorts(tb, 1)[0], tb.TempDir())
	c := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { c.Close() })
	return c
}

// startRedisServer starts redis-server on port with its files in dir and
// the extra arguments, waits until it answers, and kills it at cleanup.
func startRedisServer(tb testing.TB, server string, port int, dir string, args ...string) string {
	tb.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no"}, args...)
	cmd := exec.Command(server, args...)
	logPath := filepath.Join(dir, "redis.log")
	out, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Start()
	out.Close()
	if err != nil {
		tb.Fatalf("start redis-server on %s: %v", addr, err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitPing(tb, addr, logPath)
	return addr
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func waitPing(tb testing.TB, addr, logPath string) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			tb.Fatalf("redis-server on %s does not answer: %v\n%s", addr, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RedisClusterURL returns the REDIS_URL that names every address of a
// cluster: "redis://a1,a2,...".
func RedisClusterURL(addrs []string) string {
	return fmt.Sprintf("redis://%s", strings.Join(addrs, ","))
}
