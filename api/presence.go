package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
)

// Presence tracks who is connected to each room: a subscriber's feed
// connection is its presence.
type Presence interface {
	Join(ctx context.Context, room, person string) (leave func(), err error)
	List(ctx context.Context, room string) ([]string, error)
}

// person names the subscriber for presence: the token's sub when tokens are
// in use, else the optional ?client= display name, validated like an id.
// "" means anonymous: no presence.
func person(c *gin.Context) (string, error) {
	if sub := actor(c); sub != "" {
		return sub, nil
	}
	name := c.Query("client")
	if name == "" {
		return "", nil
	}
	if !roomfeed.ValidName(name) {
		return "", badRequest("bad_client", "client must match "+roomfeed.NamePattern.String())
	}
	return name, nil
}

// joinPresence announces the subscriber in rooms; the returned function
// ends that presence.
func (s *Server) joinPresence(c *gin.Context, rooms ...string) (func(), error) {
	if s.cfg.Presence == nil {
		return func() {}, nil
	}
	who, err := person(c)
	if err != nil || who == "" {
		return func() {}, err
	}
	var leaves []func()
	leaveAll := func() {
		for _, l := range leaves {
			l()
		}
	}
	for _, r := range rooms {
		leave, err := s.cfg.Presence.Join(c.Request.Context(), r, who)
		if err != nil {
			leaveAll()
			return nil, err
		}
		leaves = append(leaves, leave)
	}
	return leaveAll, nil
}

type presenceBody struct {
	Room   string   `json:"room"`
	People []string `json:"people"`
}

func (s *Server) presence(c *gin.Context) {
	room := c.Param("room")
	people := []string{}
	if s.cfg.Presence != nil {
		list, err := s.cfg.Presence.List(c.Request.Context(), room)
		if err != nil {
			writeError(c, err)
			return
		}
		if list != nil {
			people = list
		}
	}
	c.JSON(http.StatusOK, presenceBody{Room: room, People: people})
}
