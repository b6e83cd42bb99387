# One image with the three services' binaries; docker-compose.yml picks the command per service. They are built
# alone: built with the workspace's test tools, they would get the tests' hooks too.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p accounts-service -p advances-api -p advances-activities

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 app
COPY --from=build /src/target/release/accounts-service /src/target/release/advances-api \
    /src/target/release/advances-worker /usr/local/bin/
USER app
EXPOSE 8081 8082 8083
CMD ["accounts-service"]
