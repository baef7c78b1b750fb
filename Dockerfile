# syntax=docker/dockerfile:1
#
# roomfeed in a container: the steps of `make build` (npm ci + vite build in
# web/, then a static, trimmed Go binary), each in its own stage, and a
# distroless, non-root final image holding only the binary and web/dist.
# Configuration is through the environment only (README "Configuration").
#
#   docker build -t roomfeed .
#   docker run -p 8080:8080 -v roomfeed-data:/data -e ROOMFEED_JWT_SECRET=... roomfeed
#
# The image listens on 0.0.0.0, so roomfeed refuses to start without a token
# key (ROOMFEED_JWT_SECRET or ROOMFEED_JWT_PUBLIC_KEY_FILE) unless --insecure
# is passed on purpose. Probe GET /healthz (liveness) and GET /readyz
# (readiness) over HTTP; the image has no shell or curl for a HEALTHCHECK.

FROM node:20 AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
# The workspace packages (@roomfeed/client, @roomfeed/pinia) are part of the install.
COPY web/packages/client/package.json packages/client/
COPY web/packages/pinia/package.json packages/pinia/
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM golang:1.26 AS go
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /roomfeed ./cmd/roomfeed
# The embedded default keeps its SQLite file in /data, owned by nonroot.
RUN mkdir -p /data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=go /roomfeed /roomfeed
COPY --from=web /src/web/dist /web
COPY --from=go --chown=65532:65532 /data /data
# The editor in /web reads its API and token endpoint at run time from GET
# /config.json: -e ROOMFEED_WEB_SERVER_URL=... -e ROOMFEED_WEB_TOKEN_ENDPOINT=...
# point it elsewhere without rebuilding the image.
ENV ROOMFEED_ADDR=0.0.0.0:8080 \
    ROOMFEED_WEB_DIR=/web \
    DATABASE_URL=sqlite:///data/roomfeed.db
VOLUME /data
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/roomfeed"]
