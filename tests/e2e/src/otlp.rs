//! A minimal OTLP/gRPC trace collector on loopback: what the services export when
//! `telemetry.otlp_endpoint` points at it, kept for a test to read.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio_util::sync::CancellationToken;

/// One span as received: which service sent it, where it sits in its trace, its name and
/// its attributes (values as text).
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    /// Empty for a trace's root.
    pub parent_span_id: Vec<u8>,
    pub name: String,
    pub attributes: HashMap<String, String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// A running collector; stops when dropped.
pub struct OtlpCollector {
    /// `http://127.0.0.1:PORT`, for `telemetry.otlp_endpoint`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    stop: CancellationToken,
}

struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = text(
                resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref()),
            );
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    name: span.name,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(a.value.as_ref())))
                        .collect(),
                });
            }
        }
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl OtlpCollector {
    pub async fn start() -> OtlpCollector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP collector");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let service = TraceServiceServer::new(Receiver {
            spans: Arc::clone(&spans),
        });
        let stopped = stop.clone();
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    stopped.cancelled_owned(),
                )
                .await;
            if let Err(error) = served {
                eprintln!("the test OTLP collector stopped: {error}");
            }
        });
        OtlpCollector {
            endpoint,
            spans,
            stop,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl OtlpCollector {
    /// For each span named `leaf`, its ancestors from the root down to it, as far as they
    /// were received: `[stripe_webhook, publish, deliver, attempt, crm_request]` when the
    /// whole chain arrived.
    pub fn chains_to(&self, leaf: &str) -> Vec<Vec<ReceivedSpan>> {
        let spans = self.spans();
        let by_id: HashMap<(&[u8], &[u8]), &ReceivedSpan> = spans
            .iter()
            .map(|s| ((s.trace_id.as_slice(), s.span_id.as_slice()), s))
            .collect();
        spans
            .iter()
            .filter(|s| s.name == leaf)
            .map(|s| {
                let mut chain = vec![s.clone()];
                let mut current = s;
                while let Some(parent) = by_id.get(&(
                    current.trace_id.as_slice(),
                    current.parent_span_id.as_slice(),
                )) {
                    chain.push((*parent).clone());
                    current = parent;
                }
                chain.reverse();
                chain
            })
            .collect()
    }
}

/// The spans a Stripe webhook's trace passes through before its CRM calls (`crm_request`,
/// directly under `attempt` or under a bulk call's `batch`).
pub const WEBHOOK_TO_WORKER: [&str; 4] = ["stripe_webhook", "publish", "deliver", "attempt"];

impl OtlpCollector {
    /// Fails unless some trace runs [`WEBHOOK_TO_WORKER`], parent to child, from the
    /// `ingest` service into the `worker` service and on to a `crm_request` span of
    /// `destination` with its method, route template and status; and unless no span of any
    /// trace holds an email address or one of `secrets`. Returns how many such chains
    /// arrived.
    pub fn assert_webhook_to_crm(
        &self,
        ingest: &str,
        worker: &str,
        destination: &str,
        secrets: &[&str],
    ) -> usize {
        let chains: Vec<Vec<ReceivedSpan>> = self
            .chains_to("crm_request")
            .into_iter()
            .filter(|chain| {
                chain.last().and_then(|s| s.attribute("destination")) == Some(destination)
            })
            .collect();
        let complete: Vec<&Vec<ReceivedSpan>> = chains
            .iter()
            .filter(|chain| {
                chain.len() > WEBHOOK_TO_WORKER.len()
                    && chain[..4]
                        .iter()
                        .map(|s| s.name.as_str())
                        .eq(WEBHOOK_TO_WORKER)
                    && chain[..2].iter().all(|s| s.service == ingest)
                    && chain[2..].iter().all(|s| s.service == worker)
            })
            .collect();
        let shapes: std::collections::BTreeSet<String> = chains
            .iter()
            .map(|chain| {
                let names: Vec<String> = chain
                    .iter()
                    .map(|s| format!("{}:{}", s.service, s.name))
                    .collect();
                names.join(" > ")
            })
            .collect();
        assert!(
            !complete.is_empty(),
            "no trace runs {WEBHOOK_TO_WORKER:?} from {ingest} into {worker} and on to a \
             {destination} CRM request; of {} {destination} request spans, the chains were: \
             {shapes:#?}",
            chains.len()
        );
        for chain in &complete {
            let request = chain.last().expect("a chain ends at its request");
            for key in ["method", "endpoint", "status", "connection"] {
                assert!(
                    request.attribute(key).is_some_and(|v| !v.is_empty()),
                    "a crm_request span without {key}: {request:?}"
                );
            }
            assert!(
                chain[3].attribute("attempt").is_some(),
                "an attempt span without its number: {:?}",
                chain[3]
            );
        }
        for span in self.spans() {
            for (key, value) in &span.attributes {
                let leaked = value.contains('@') || secrets.iter().any(|s| value.contains(s));
                assert!(
                    !leaked,
                    "span {} of {} carries personal data or a secret in {key}: {value}",
                    span.name, span.service
                );
            }
        }
        complete.len()
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
