# Builds the example bot (launcher, clusters and services are one binary).
#   docker build -t megane-basic .
#   docker run -e DISCORD_TOKEN=... -e REDIS_URL=redis://redis:6379/0 megane-basic
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bot ./examples/basic \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/megane-cli ./cmd/megane-cli

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bot /usr/local/bin/bot
COPY --from=build /out/megane-cli /usr/local/bin/megane-cli
# The launcher re-executes this binary for every cluster and service, and
# forwards SIGTERM so they save their gateway sessions before exiting;
# docker compose's stop_grace_period must exceed MEGANE_SHUTDOWN_TIMEOUT.
# Without DISCORD_TOKEN it runs the demo against the built-in fake Discord.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/bot"]
