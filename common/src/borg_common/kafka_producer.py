"""JSON messages to a Kafka topic: the producer of the agents' training log and of the
monitor's memory readings.

Only imported when `CONFIG_kafka_bootstrap_servers` is set, so a service without Kafka never
loads confluent_kafka. The producer is librdkafka's: `emit` serialises the message and
enqueues it (`produce` + `poll(0)`, a few microseconds); librdkafka's own thread batches
(linger.ms), compresses and sends. Nothing here waits for the broker.

Outages: messages wait in librdkafka's queue, bounded by `buffer_messages`, and go out when
the broker answers again. `message_timeout` 0 (the default) means they never expire while
they wait, so the buffer size alone bounds what an outage can cost: a message that finds
the buffer full is dropped, counted and logged. Idempotence keeps retried batches from
being written twice or out of order after a broker restart. `close()` waits at most
`flush_timeout` seconds; what is still undelivered then is counted and logged.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from loguru import logger

from borg_common.settings import SharedSettings
from borg_common.throttle import ThrottledLog

# Repeated problems (a broker that stays down, a full buffer) are logged at most this often.
WARNING_INTERVAL_SECONDS = 60.0


def encode_message(record: dict[str, Any]) -> bytes:
    """The record as compact JSON; non-finite floats (a diverged loss) become null.

    Python's json would write NaN/Infinity, which is not JSON and stops a Logstash pipeline.
    """
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        finite = {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in record.items()
        }
        return json.dumps(finite, separators=(",", ":"), allow_nan=False).encode()


@dataclass
class DeliveryCounters:
    """What became of the messages given to a KafkaJsonProducer.

    Attributes:
        sent: messages accepted into the producer's buffer.
        delivered: messages the broker acknowledged.
        failed: messages the producer gave up on (delivery error, message timeout).
        dropped: messages refused because the buffer was full or the producer failed.
        undelivered: messages still buffered when `close()` gave up waiting.
    """

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    undelivered: int = 0


class _ToLoguru(logging.Handler):
    """librdkafka's own log lines, at DEBUG: it logs every failed reconnect as an error,
    many per second during an outage; the producer's error callback reports outages instead."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.debug("librdkafka: {}", record.getMessage())


def _librdkafka_logger() -> logging.Logger:
    log = logging.getLogger("borg.librdkafka")
    if not log.handlers:
        log.addHandler(_ToLoguru())
        log.setLevel(logging.DEBUG)
        log.propagate = False
    return log


class KafkaJsonProducer:
    """Produces JSON messages to one Kafka topic, asynchronously, never blocking.

    `kind` names the messages in the log lines (e.g. 'training-log', 'memory-monitoring').
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        key: str,
        kind: str,
        buffer_messages: int = 100_000,
        message_timeout: float = 0.0,
        linger_ms: int = 200,
        compression: str = "zstd",
        flush_timeout: float = 5.0,
        client_id: str = "borg-dqn",
    ) -> None:
        self.topic = topic
        self.counters = DeliveryCounters()
        self._kind = kind
        self._key = key.encode()
        self._flush_timeout = flush_timeout
        self._buffer_messages = buffer_messages
        self._broker_trouble = ThrottledLog(WARNING_INTERVAL_SECONDS)
        self._failure_warning = ThrottledLog(WARNING_INTERVAL_SECONDS)
        self._drop_warning = ThrottledLog(WARNING_INTERVAL_SECONDS)
        self._outage = False
        self._closed = False
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "client.id": client_id,
                "linger.ms": linger_ms,
                "compression.type": compression,
                # Retries after a broker restart neither duplicate nor reorder messages.
                "enable.idempotence": True,
                "acks": "all",
                # The explicit bound on an outage: messages wait (0: without a deadline) in a
                # queue of at most buffer_messages; 1 GiB of librdkafka's byte bound is far more
                # than 10M messages of the hive (~400-500 bytes each) would need.
                "message.timeout.ms": round(message_timeout * 1000),
                "queue.buffering.max.messages": buffer_messages,
                "queue.buffering.max.kbytes": 1024 * 1024,
                "reconnect.backoff.max.ms": 5000,
                "log.connection.close": False,  # the broker closing idle connections is no news
                "on_delivery": self._on_delivery,
                "error_cb": self._on_error,
                "logger": _librdkafka_logger(),
            }
        )
        logger.info(
            "{} messages to Kafka {} topic {} (buffer {} messages, linger {} ms, {})",
            kind,
            bootstrap_servers,
            topic,
            buffer_messages,
            linger_ms,
            compression,
        )

    def emit(self, record: dict[str, Any]) -> None:
        """Enqueue one message; returns at once, whether or not the broker is reachable."""
        if self._closed:
            self._drop("the producer is closed")
            return
        payload = encode_message(record)
        try:
            try:
                self._producer.produce(self.topic, payload, key=self._key)
            except BufferError:
                self._producer.poll(0)  # serve delivery reports: they may free room
                self._producer.produce(self.topic, payload, key=self._key)
        except BufferError:
            self._drop(f"the buffer of {self._buffer_messages} messages is full (Kafka unreachable?)")
            return
        except KafkaException as error:  # e.g. a fatal producer error: the producer is unusable
            self._drop(f"the producer refused it: {error}")
            return
        self.counters.sent += 1
        self._producer.poll(0)

    def close(self) -> None:
        """Deliver what is buffered, waiting at most flush_timeout seconds; log the counters."""
        if self._closed:
            return
        self._closed = True
        self.counters.undelivered = self._producer.flush(self._flush_timeout)
        counters = self.counters
        summary = (
            f"{self._kind} messages to Kafka: sent {counters.sent}, delivered {counters.delivered}, "
            f"failed {counters.failed}, dropped {counters.dropped}, undelivered at exit {counters.undelivered}"
        )
        if counters.failed or counters.dropped or counters.undelivered:
            logger.warning("{} (messages not in Kafka: see the counts)", summary)
        else:
            logger.info(summary)

    def stats(self) -> dict[str, int]:
        """The counters as a dict."""
        return asdict(self.counters)

    def _drop(self, reason: str) -> None:
        self.counters.dropped += 1
        self._drop_warning.warning(
            "{} message dropped: {}; {} dropped so far", self._kind, reason, self.counters.dropped
        )

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.counters.delivered += 1
            if self._outage:
                self._outage = False
                logger.info("Kafka reachable again; delivering the buffered messages ({} pending)", len(self._producer))
            return
        self.counters.failed += 1
        self._failure_warning.warning(
            "{} message not delivered: {}; {} failed so far", self._kind, error, self.counters.failed
        )

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            logger.error("Kafka producer failed for good: {}; further {} messages are dropped", error, self._kind)
            return
        self._outage = True
        self._broker_trouble.warning(
            "Kafka: {} ({} messages buffered, bound {}; the service goes on)",
            error.str(),
            len(self._producer),
            self._buffer_messages,
        )


def producer_from_settings(
    settings: SharedSettings, bootstrap_servers: str, topic: str, *, key: str, kind: str, client_id: str
) -> KafkaJsonProducer:
    """A producer to `topic` as the shared CONFIG_kafka_* keys set it up."""
    return KafkaJsonProducer(
        bootstrap_servers,
        topic,
        key=key,
        kind=kind,
        buffer_messages=settings.kafka_buffer_messages,
        message_timeout=settings.kafka_message_timeout,
        linger_ms=settings.kafka_linger_ms,
        compression=settings.kafka_compression,
        flush_timeout=settings.kafka_flush_timeout,
        client_id=client_id,
    )
