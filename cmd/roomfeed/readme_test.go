package main

import (
	"bufio"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// documentedFlag is one setting as the program describes it.
type documentedFlag struct {
	env, def string
}

var (
	usageFlag    = regexp.MustCompile(`^  -([a-z0-9-]+)`)
	usageEnv     = regexp.MustCompile(`\(\$([A-Z0-9_]+)\)`)
	usageDefault = regexp.MustCompile(`\(default (.*)\)$`)
)

// programFlags reads the service's flags, their environment variables and
// defaults from its own -h output (with an empty environment).
func programFlags(t *testing.T) map[string]documentedFlag {
	t.Helper()
	var out strings.Builder
	if _, err := parseConfig([]string{"-h"}, func(string) string { return "" }, &out); err == nil {
		t.Fatal("parseConfig -h: got no error, want usage")
	}
	flags := map[string]documentedFlag{}
	name := ""
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		line := sc.Text()
		if m := usageFlag.FindStringSubmatch(line); m != nil {
			name = m[1]
			flags[name] = documentedFlag{}
			continue
		}
		if name == "" || !strings.HasPrefix(line, "    \t") {
			continue
		}
		f := flags[name]
		if m := usageEnv.FindStringSubmatch(line); m != nil {
			f.env = m[1]
		}
		if m := usageDefault.FindStringSubmatch(line); m != nil {
			f.def = m[1]
			if s, err := strconv.Unquote(f.def); err == nil {
				f.def = s
			}
		}
		flags[name] = f
	}
	if len(flags) < 10 {
		t.Fatalf("found %d flags in the usage text, want all of them:\n%s", len(flags), out.String())
	}
	return flags
}

// readmeRow is one row of the README's configuration table.
type readmeRow struct {
	flag, env, def string
	line           int
}

// readmeConfigRows reads the table under "## Configuration" in README.md.
func readmeConfigRows(t *testing.T) []readmeRow {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []readmeRow
	in := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			in = strings.TrimSpace(line) == "## Configuration"
			continue
		}
		if !in || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) < 3 {
			continue
		}
		cell := func(i int) string { return strings.Trim(strings.TrimSpace(cells[i]), "`") }
		flag := cell(0)
		if flag == "flag" || strings.HasPrefix(flag, "---") {
			continue // the header and its separator
		}
		rows = append(rows, readmeRow{flag: strings.TrimPrefix(flag, "--"), env: cell(1), def: cell(2), line: i + 1})
	}
	if len(rows) == 0 {
		t.Fatal(`README.md has no table under "## Configuration"`)
	}
	return rows
}

// sameDefault compares a README default with the program's: durations by
// value ("1m" is "1m0s"), and the README's ways of saying "none" as empty.
func sameDefault(readme, program string) bool {
	if a, err := time.ParseDuration(readme); err == nil {
		if b, err := time.ParseDuration(program); err == nil {
			return a == b
		}
	}
	return normDefault(readme) == normDefault(program)
}

// normDefault maps the ways the README says "no default" to "".
func normDefault(s string) string {
	switch s {
	case "(empty)", "(none)", "(unset)", "0", "0s", "false", "-", "—":
		return ""
	}
	return s
}

// TestREADMEConfigurationTable checks the README's configuration table
// against the flags the program defines: every flag has a row, every row a
// flag, with the same environment variable and default. Rows for settings
// read only from the environment (flag column "—") must name a variable the
// program reads.
func TestREADMEConfigurationTable(t *testing.T) {
	flags := programFlags(t)
	source := ""
	for _, f := range []string{"config.go", "main.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		source += string(b)
	}
	seen := map[string]bool{}
	for _, r := range readmeConfigRows(t) {
		if r.flag == "—" || r.flag == "-" || r.flag == "" {
			if !strings.Contains(source, `"`+r.env+`"`) {
				t.Errorf("README.md:%d: environment-only row %s is not read by config.go or main.go", r.line, r.env)
			}
			continue
		}
		f, ok := flags[r.flag]
		if !ok {
			t.Errorf("README.md:%d: --%s is not a flag of roomfeed", r.line, r.flag)
			continue
		}
		if seen[r.flag] {
			t.Errorf("README.md:%d: --%s is listed twice", r.line, r.flag)
		}
		seen[r.flag] = true
		wantEnv := f.env
		if wantEnv == "" {
			wantEnv = "(none)"
		}
		if normDefault(r.env) != normDefault(wantEnv) && r.env != wantEnv {
			t.Errorf("README.md:%d: --%s environment: got %q, want %q", r.line, r.flag, r.env, wantEnv)
		}
		if !sameDefault(r.def, f.def) {
			t.Errorf("README.md:%d: --%s default: got %q, want %q", r.line, r.flag, r.def, f.def)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		if f := flags[name]; !seen[name] {
			t.Errorf("README.md: the configuration table has no row for --%s ($%s, default %q)", name, f.env, f.def)
		}
	}
}
