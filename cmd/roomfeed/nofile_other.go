//go:build !unix

package main

// defaultMaxStreams is fallback where the descriptor limit is not a thing
// roomfeed reads.
func defaultMaxStreams(fallback int) int { return fallback }
