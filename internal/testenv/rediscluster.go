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
	"syscall"
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
	c := StartRedisCluster(tb, masters, 0, 5*time.Second)
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Cluster is a throwaway Redis Cluster whose nodes a test can kill.
type Cluster struct {
	Nodes []*RedisNode
	cli   string
}

// RedisNode is one redis-server process of a Cluster.
type RedisNode struct {
	Addr string
	cmd  *exec.Cmd
}

// Stop stops the node with SIGSTOP: it keeps its connections and accepts
// new ones (the kernel does) but never answers, as a hung server or a host
// whose packets are lost would. The cleanup kills it.
func (n *RedisNode) Stop() {
	_ = n.cmd.Process.Signal(syscall.SIGSTOP)
}

// Kill kills the node with SIGKILL.
func (n *RedisNode) Kill() {
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
}

// StartRedisCluster starts a Redis Cluster of masters with replicas
// replicas each (masters*(1+replicas) nodes, masters first in Nodes), whose
// nodes take a master for failed after nodeTimeout without an answer (and
// promote one of its replicas), as RedisCluster does otherwise. extra are
// more redis-server arguments for every node.
func StartRedisCluster(tb testing.TB, masters, replicas int, nodeTimeout time.Duration, extra ...string) *Cluster {
	tb.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(tb, "redis-server (for a Redis Cluster)", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		unavailable(tb, "redis-cli (for a Redis Cluster)", err)
	}
	n := masters * (1 + replicas)
	ports := freePorts(tb, 2*n) // client ports, then cluster bus ports
	c := &Cluster{cli: cli}
	for i := range n {
		dir := tb.TempDir()
		args := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--repl-diskless-sync-delay", "0",
			"--cluster-port", strconv.Itoa(ports[n+i]),
			"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout.Milliseconds()))}, extra...)
		c.Nodes = append(c.Nodes, startRedisNode(tb, server, ports[i], dir, args...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"--cluster", "create"}
	for _, node := range c.Nodes {
		args = append(args, node.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, node := range c.Nodes {
		if err := c.waitOK(ctx, node.Addr); err != nil {
			tb.Fatal(err)
		}
	}
	if replicas > 0 {
		// A replica that has not finished its first sync cannot be
		// promoted: a master killed before then is never failed over.
		for _, node := range c.Nodes {
			if err := waitSynced(ctx, node.Addr); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return c
}

// waitSynced waits until the node at addr, when it is a replica, has a
// working link to its master (its first sync done).
func waitSynced(ctx context.Context, addr string) error {
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	for {
		info, err := rc.Info(ctx, "replication").Result()
		if err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up")) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("replica %s: not synced with its master (%v):\n%s", addr, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitOK waits until the node at addr reports cluster_state:ok.
func (c *Cluster) waitOK(ctx context.Context, addr string) error {
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	for {
		info, err := rc.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster node %s: not cluster_state:ok (%v):\n%s", addr, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MasterOf returns the node that serves slot as a master, asking the node
// at via (any live node), and its cluster node id.
func (c *Cluster) MasterOf(ctx context.Context, via string, slot int) (*RedisNode, string, error) {
	rc := redis.NewClient(&redis.Options{Addr: via})
	defer rc.Close()
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, "", fmt.Errorf("cluster slots via %s: %w", via, err)
	}
	for _, s := range slots {
		if slot < int(s.Start) || slot > int(s.End) || len(s.Nodes) == 0 {
			continue
		}
		for _, n := range c.Nodes {
			if n.Addr == s.Nodes[0].Addr {
				return n, s.Nodes[0].ID, nil
			}
		}
		return nil, "", fmt.Errorf("slot %d is served by %s, not a node of this cluster", slot, s.Nodes[0].Addr)
	}
	return nil, "", fmt.Errorf("slot %d is not served", slot)
}

// KeySlot returns the hash slot of key, asking the node at via.
func (c *Cluster) KeySlot(ctx context.Context, via, key string) (int, error) {
	rc := redis.NewClient(&redis.Options{Addr: via})
	defer rc.Close()
	s, err := rc.ClusterKeySlot(ctx, key).Result()
	return int(s), err
}

// Reshard moves slots hash slots from the master with node id from to the
// one with id to, with redis-cli --cluster reshard through the node at via.
// redis-cli moves the source's lowest slots first.
func (c *Cluster) Reshard(ctx context.Context, via, from, to string, slots int) error {
	out, err := exec.CommandContext(ctx, c.cli, "--cluster", "reshard", via, "--cluster-from", from, "--cluster-to", to,
		"--cluster-slots", strconv.Itoa(slots), "--cluster-yes").CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster reshard: %w\n%s", err, out)
	}
	return nil
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
	addr := startRedisNode(tb, server, freePorts(tb, 1)[0], tb.TempDir()).Addr
	c := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { c.Close() })
	return c
}

// startRedisNode starts redis-server on port with its files in dir and
// the extra arguments, waits until it answers, and kills it at cleanup.
func startRedisNode(tb testing.TB, server string, port int, dir string, args ...string) *RedisNode {
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
	return &RedisNode{Addr: addr, cmd: cmd}
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
