# The example bot (examples/basic) in a small image. The binary is both the
# launcher and every cluster: the launcher re-executes itself with
# MEGANE_ROLE set, so one static file is all the image needs.
#
#   docker build -t megane-basic .
#   docker run --rm -e DISCORD_TOKEN=... -e REDIS_URL=redis://host:6379/0 megane-basic
#
# Without DISCORD_TOKEN it runs the demo against the built-in fake Discord.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/bot ./examples/basic

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bot /bot
# SIGTERM makes the launcher stop every cluster resumably (sessions saved);
# docker compose's stop_grace_period must exceed MEGANE_SHUTDOWN_TIMEOUT.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/bot"]
