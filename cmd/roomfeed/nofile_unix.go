//go:build unix

package main

import (
	"syscall"

	"github.com/roomfeed/roomfeed/api"
)

// defaultMaxStreams is the feeds this process's descriptor limit holds
// (api.StreamsFor; Go raised the soft limit to the hard one at start), or
// fallback when the limit cannot be read.
func defaultMaxStreams(fallback int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return fallback
	}
	return api.StreamsFor(lim.Cur)
}
