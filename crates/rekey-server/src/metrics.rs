//! Prometheus metrics: request counts and latency by matched route, and
//! connections by status (refreshed at scrape time).

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    connections: Family<StatusLabels, Gauge>,
    deliveries: Family<StatusLabels, Gauge>,
    /// Each method's routes' handles into the two families above, found
    /// per request by the route's `&str` instead of building label sets
    /// (four `String`s and two hashed lookups in the families each time).
    /// A family's handles share its counts. Bounded: only matched routes
    /// reach `track` (an unknown method or path is answered before it).
    routes: RwLock<HashMap<Method, HashMap<String, Arc<RouteMetrics>>>>,
}

/// One method and route's handles.
struct RouteMetrics {
    labels: LatencyLabels,
    latency: Histogram,
    /// By status code; a handful per route.
    requests: RwLock<Vec<(u16, Counter)>>,
}

impl RouteMetrics {
    /// Count one answer with `status`, through `family` the first time.
    fn count(&self, family: &Family<RouteLabels, Counter>, status: u16) {
        let known =
            |v: &[(u16, Counter)]| v.iter().find(|(s, _)| *s == status).map(|(_, c)| c.clone());
        let read = self.requests.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = known(&read) {
            c.inc();
            return;
        }
        drop(read);
        let mut write = self.requests.write().unwrap_or_else(|p| p.into_inner());
        let c = match known(&write) {
            Some(c) => c,
            None => {
                let c = family
                    .get_or_create(&RouteLabels {
                        method: self.labels.method.clone(),
                        route: self.labels.route.clone(),
                        status,
                    })
                    .clone();
                write.push((status, c.clone()));
                c
            }
        };
        c.inc();
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("rekey");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let connections = Family::<StatusLabels, Gauge>::default();
        let deliveries = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by status (pending, delivered, failed; all tenants)",
            deliveries.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "connections",
            "Connections by status (all tenants)",
            connections.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            connections,
            deliveries,
            routes: RwLock::new(HashMap::new()),
        })
    }

    /// The handles of `method` on `route`, made on first use.
    fn route(&self, method: &Method, route: &str) -> Arc<RouteMetrics> {
        let read = self.routes.read().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = read.get(method).and_then(|r| r.get(route)) {
            return m.clone();
        }
        drop(read);
        let mut write = self.routes.write().unwrap_or_else(|p| p.into_inner());
        write
            .entry(method.clone())
            .or_default()
            .entry(route.to_string())
            .or_insert_with(|| {
                let labels = LatencyLabels {
                    method: method.as_str().to_string(),
                    route: route.to_string(),
                };
                Arc::new(RouteMetrics {
                    latency: self.latency.get_or_create(&labels).clone(),
                    labels,
                    requests: RwLock::new(Vec::new()),
                })
            })
            .clone()
    }

    pub fn set_delivery_counts(&self, counts: &[(String, i64)]) {
        for st in ["pending", "delivered", "failed"] {
            let n = counts
                .iter()
                .find(|(k, _)| k == st)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.deliveries
                .get_or_create(&StatusLabels { status: st.into() })
                .set(n);
        }
    }

    pub fn set_connection_counts(&self, counts: &[(String, i64)]) {
        for s in rekey_core::connection::Status::ALL {
            let n = counts
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.connections
                .get_or_create(&StatusLabels {
                    status: s.as_str().into(),
                })
                .set(n);
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let rm = m.route(req.method(), route);
    let start = Instant::now();
    let resp = next.run(req).await;
    rm.latency.observe(start.elapsed().as_secs_f64());
    rm.count(&m.requests, resp.status().as_u16());
    resp
}
