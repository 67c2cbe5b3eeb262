//! Integration tests of ingest against real NATS (nats://127.0.0.1:4222, a fresh prefix per
//! test) and the sandbox's vendor emulators on a random loopback port.

mod chargebee;
