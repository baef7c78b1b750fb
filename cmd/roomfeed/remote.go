package main

// What the subcommands that talk to a running node (`roomfeed tail`,
// `roomfeed history`) share: their flag set with --server and --token,
// and the client they make from it.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/roomfeed/roomfeed/client"
)

// remote is the node a subcommand talks to and the token it sends.
type remote struct {
	Server *url.URL
	Token  string
}

// client is a client of the node over hc, sending the token if there is one.
func (r remote) client(hc *http.Client) *client.Client {
	c := &client.Client{Server: r.Server.String(), HTTPClient: hc}
	if token := r.Token; token != "" {
		c.Token = func(context.Context) (string, error) { return token, nil }
	}
	return c
}

// remoteFlags is the flag set of `roomfeed NAME`, a subcommand that talks
// to a node: -h prints its usage text and the flags; --server (default
// $ROOMFEED_SERVER) and --token (default $ROOMFEED_TOKEN) are registered.
type remoteFlags struct {
	*flag.FlagSet
	name          string
	server, token string
}

func newRemoteFlags(name, usage string, getenv func(string) string, stderr io.Writer) *remoteFlags {
	f := &remoteFlags{FlagSet: flag.NewFlagSet("roomfeed "+name, flag.ContinueOnError), name: name}
	f.SetOutput(stderr)
	f.Usage = func() {
		fmt.Fprint(f.Output(), usage)
		f.PrintDefaults()
	}
	f.server = getenv("ROOMFEED_SERVER")
	if f.server == "" {
		f.server = "http://127.0.0.1:8080"
	}
	f.StringVar(&f.server, "server", f.server, "base URL of a roomfeed node or of the proxy in front of them ($ROOMFEED_SERVER)")
	f.StringVar(&f.token, "token", getenv("ROOMFEED_TOKEN"), "bearer token sent as Authorization ($ROOMFEED_TOKEN)")
	return f
}

// parse parses args, flags before or after the positional arguments, and
// returns the positional ones, which must be want of them (what names
// them, for the error).
func (f *remoteFlags) parse(args []string, want int, what string) ([]string, error) {
	pos, err := parseArgs(f.FlagSet, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != want {
		fmt.Fprintf(f.Output(), "roomfeed %s: want %s, got %d arguments\n", f.name, what, len(pos))
		f.Usage()
		return nil, fmt.Errorf("%w: want %s, got %d arguments", errUsage, what, len(pos))
	}
	return pos, nil
}

// remote checks --server and returns it with --token.
func (f *remoteFlags) remote() (remote, error) {
	u, err := url.Parse(strings.TrimRight(f.server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return remote{}, fmt.Errorf("--server %q: want http://host:port or https://host:port", f.server)
	}
	return remote{Server: u, Token: f.token}, nil
}
