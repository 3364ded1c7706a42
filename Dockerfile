# syntax=docker/dockerfile:1

# Build: a static (musl) binary, so the runtime image needs no libc.
# Builds natively for the platform being built (docker buildx --platform linux/amd64,linux/arm64).
FROM rust:1.95-bookworm AS builder

# aws-lc-rs (the TLS crypto provider of rustls, used by kube and the AWS SDK) compiles C code:
# it needs a C compiler for the musl target (musl-gcc, from musl-tools) and cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools cmake \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"

WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    set -eux; \
    target="$(uname -m)-unknown-linux-musl"; \
    env "CC_$(echo "$target" | tr - _)=musl-gcc" \
        cargo build --release --locked --target "$target" --bin stackpilot; \
    cp "target/$target/release/stackpilot" /stackpilot

# Runtime: distroless static (CA certificates, /etc/passwd with the nonroot user, no shell).
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="stackpilot" \
      org.opencontainers.image.description="Kubernetes operator for AWS CloudFormation stacks, pipelines and multi-region deployments"
COPY --from=builder /stackpilot /stackpilot
USER 65532:65532
# Admin server: /metrics, /livez, /readyz.
EXPOSE 8080
ENTRYPOINT ["/stackpilot"]
CMD ["run"]
