"""ktrdr's shared contract: what every service and every user's own code agrees on.

Modules:
    types: named, constrained value types (Symbol, Timeframe, UtcDatetime, ...).
    messages: every command, event and reply, one module per family.
    subjects: builders and parsers for every NATS subject.
    streams: every stream, durable consumer, KV bucket and object store.
    codec: JSON/msgpack encoding and decoding with one clear error type.
    errors: the retryable/permanent error hierarchy and its wire form.
    config: typed, frozen settings from ``KTRDR_*`` environment variables.
    runtime: connect, serve a ``nats.micro`` service, drain on SIGTERM.
    consumer: a durable pull-consumer loop that survives server restarts.
    client: a small typed SDK for users' own services.
"""

__version__ = "0.1.0"
