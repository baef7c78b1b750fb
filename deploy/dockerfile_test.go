package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDockerfileMirrorsMakeBuild: no Docker engine runs where this is
// tested, so the Dockerfile is checked against what is: its build commands
// are those of `make build`, its Go image is go.mod's version, and every
// variable it sets is one the program reads.
func TestDockerfileMirrorsMakeBuild(t *testing.T) {
	docker := readFile(t, "../Dockerfile")
	makefile := readFile(t, "../Makefile")

	m := regexp.MustCompile(`(?m)^build:.*\n((?:\t.*\n)+)`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile has no build target")
	}
	goBuild := ""
	for line := range strings.SplitSeq(m[1], "\n") {
		if strings.Contains(line, " build ") {
			goBuild = strings.TrimSpace(strings.NewReplacer("$(GO)", "go", "$(BIN)", "/roomfeed").Replace(line))
		}
	}
	if goBuild == "" || !strings.Contains(docker, "RUN "+goBuild+"\n") {
		t.Errorf("Dockerfile: want the build command of `make build` as %q", "RUN "+goBuild)
	}
	for _, step := range []string{"npm ci --no-audit --no-fund", "npm run build"} {
		if !strings.Contains(makefile, step) {
			t.Errorf("Makefile no longer runs %q: update this test and the Dockerfile together", step)
		}
		if !strings.Contains(docker, "RUN "+step+"\n") {
			t.Errorf("Dockerfile: want RUN %s, as `make build` does", step)
		}
	}

	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(readFile(t, "../go.mod"))
	if goVersion == nil || !strings.Contains(docker, "FROM golang:"+goVersion[1]+" ") {
		t.Errorf("Dockerfile: want FROM golang:%v, the version of go.mod", goVersion)
	}
	nodeMin := regexp.MustCompile(`"node": ">=(\d+)`).FindStringSubmatch(readFile(t, "../web/package.json"))
	if nodeMin == nil || !strings.Contains(docker, "FROM node:"+nodeMin[1]+" ") {
		t.Errorf("Dockerfile: want FROM node:%v, the major version web/package.json requires", nodeMin)
	}
	for _, want := range []string{"FROM gcr.io/distroless/static-debian12:nonroot\n", "USER nonroot\n", "EXPOSE 8080\n",
		"ROOMFEED_ADDR=0.0.0.0:8080", "ROOMFEED_WEB_DIR=/web", "COPY --from=web /src/web/dist /web\n", `ENTRYPOINT ["/roomfeed"]`} {
		if !strings.Contains(docker, want) {
			t.Errorf("Dockerfile: want %q", want)
		}
	}
	config := readFile(t, "../cmd/roomfeed/config.go")
	env := regexp.MustCompile(`(?m)^ENV ((?:.*\\\n)*.*)`).FindStringSubmatch(docker)
	if env == nil {
		t.Fatal("Dockerfile has no ENV")
	}
	for _, kv := range strings.Fields(strings.ReplaceAll(env[1], "\\\n", " ")) {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(config, `"`+name+`"`) {
			t.Errorf("Dockerfile sets %s, which cmd/roomfeed/config.go does not read", name)
		}
	}
}
