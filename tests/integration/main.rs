//! The workspace's integration tests: one binary, so the build is shared. Every test
//! starts the real processes it needs (the CF simulator, an S3-compatible server) on free
//! ports; `make test` builds the binaries and starts the S3 server first.

mod cf_client;
mod harness;
mod store_s3;
