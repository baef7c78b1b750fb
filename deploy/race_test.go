//go:build race

package deploy_test

// raceEnabled: the test runs under -race, so the binary is built with it
// too (finding races in the nodes, and reusing the packages the race test
// run has already compiled).
const raceEnabled = true
