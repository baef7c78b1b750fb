package api

import "github.com/gin-gonic/gin"

// Routes lists the registered method and path pairs.
func (s *Server) Routes() gin.RoutesInfo { return s.router.Routes() }
