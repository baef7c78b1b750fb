// Package deploy owns roomfeed's deployment files (nginx.conf; the
// Dockerfile is at the repository root) and their end-to-end test: the real
// binary, two nodes on PostgreSQL and Redis, and Debian's nginx in front.
// It has no code of its own.
package deploy
