"""Sends logs and metrics to Keel with the OpenTelemetry Python SDK's OTLP/HTTP
protobuf exporters, as an instrumented service would (used by tests/otel_sdk.rs).

Usage: otel_sdk_client.py BASE_URL API_KEY RUN_ID
"""

import logging
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

base, key, run = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"authorization": f"Bearer {key}"}
resource = Resource.create({"service.name": "sdk-test", "cloud.account.id": "otel-acct"})

logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(
    BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs", headers=headers))
)
logger = logging.getLogger("sdk-test")
logger.setLevel(logging.INFO)
logger.propagate = False
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))
for i in range(50):
    logger.warning("sdk record %d of %s", i, run)
logs.shutdown()  # flushes every record before returning

# Metrics gzipped, exported once, on shutdown.
reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(
        endpoint=f"{base}/v1/metrics", headers=headers, compression=Compression.Gzip
    ),
    export_interval_millis=600_000,
)
meters = MeterProvider(resource=resource, metric_readers=[reader])
meter = meters.get_meter("sdk-test")
requests = meter.create_counter("sdk.requests")
latency = meter.create_histogram("sdk.latency", unit="ms")
for i in range(7):
    requests.add(1, {"route": "/checkout"})
    latency.record(10 * (i + 1), {"route": "/checkout"})
meters.shutdown()
