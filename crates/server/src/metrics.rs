//! Prometheus metrics, rendered by hand in the text format.
//!
//! Tenant isolation reaches metrics too: per-tenant series are kept under
//! the tenant's name but `/metrics` shows a caller only its own tenant's
//! series. Request latency is per route template (never a raw path, which
//! would carry ids) and is not split by tenant.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use aruntime_core::TaskStatus;

const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    granted: Mutex<BTreeMap<String, u64>>,
    expired: Mutex<BTreeMap<String, u64>>,
    polling: Mutex<BTreeMap<String, u64>>,
    /// Per route template, then per method and status: looked up by
    /// `&str` on every request without allocating a key (a route has a
    /// handful of method and status pairs; scanning them is cheaper).
    latency: Mutex<BTreeMap<String, Vec<Served>>>,
}

/// Requests of one method answered with one status, on some route.
type Served = (String, u16, Histogram);

fn bump(map: &Mutex<BTreeMap<String, u64>>, tenant: &str, n: u64) {
    if n == 0 {
        return;
    }
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(tenant.to_owned()).or_default() += n;
}

impl Metrics {
    /// Leases granted to `tenant`.
    pub fn leases_granted(&self, tenant: &str, n: u64) {
        bump(&self.granted, tenant, n);
    }

    /// Leases of `tenant` found expired.
    pub fn leases_expired(&self, tenant: &str, n: u64) {
        bump(&self.expired, tenant, n);
    }

    /// Marks a claim of `tenant` as long-polling until the guard drops.
    pub fn polling(&self, tenant: &str) -> PollGuard<'_> {
        bump(&self.polling, tenant, 1);
        PollGuard {
            metrics: self,
            tenant: tenant.to_owned(),
        }
    }

    /// One request served.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut m = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let seen = match m.get_mut(route) {
            Some(seen) => seen,
            None => m.entry(route.to_owned()).or_default(),
        };
        let at = match seen
            .iter()
            .position(|(m, s, _)| *s == status && m == method)
        {
            Some(at) => at,
            None => {
                seen.push((method.to_owned(), status, Histogram::default()));
                seen.len() - 1
            }
        };
        let h = &mut seen[at].2;
        h.count += 1;
        h.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
    }

    /// The text exposition for a caller of `tenant`, given its task counts.
    pub fn render(&self, tenant: &str, counts: &[(TaskStatus, u64)]) -> String {
        let mut out = String::new();
        let t = escape(tenant);
        let _ = writeln!(
            out,
            "# HELP aruntime_tasks Tasks by status.\n# TYPE aruntime_tasks gauge"
        );
        for (s, n) in counts {
            let _ = writeln!(
                out,
                "aruntime_tasks{{tenant=\"{t}\",status=\"{}\"}} {n}",
                s.as_str()
            );
        }
        for (name, kind, help, map) in [
            (
                "aruntime_leases_granted_total",
                "counter",
                "Leases granted.",
                &self.granted,
            ),
            (
                "aruntime_leases_expired_total",
                "counter",
                "Leases that expired before a final write.",
                &self.expired,
            ),
            (
                "aruntime_claims_waiting",
                "gauge",
                "Claims long-polling for work now.",
                &self.polling,
            ),
        ] {
            let n = map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(tenant)
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{tenant=\"{t}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP aruntime_http_request_duration_seconds Request latency by route.\n\
             # TYPE aruntime_http_request_duration_seconds histogram"
        );
        let mut lat: Vec<(String, String, u16, Histogram)> = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(route, seen)| {
                seen.iter()
                    .map(|(m, s, h)| (m.clone(), route.clone(), *s, h.clone()))
            })
            .collect();
        lat.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
        for (method, route, status, h) in lat {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                escape(&route)
            );
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "aruntime_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "aruntime_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {c}\n\
                 aruntime_http_request_duration_seconds_sum{{{labels}}} {s}\n\
                 aruntime_http_request_duration_seconds_count{{{labels}}} {c}",
                c = h.count,
                s = h.sum
            );
        }
        out
    }
}

/// Counts a long-polling claim while it lives.
pub struct PollGuard<'a> {
    metrics: &'a Metrics,
    tenant: String,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut m = self
            .metrics
            .polling
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
