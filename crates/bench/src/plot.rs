//! An SVG line chart of throughput against worker count, one line per
//! batch size, so a person sees where it saturates. Hand-written SVG: no
//! plotting dependency for a dozen points.

use std::fmt::Write;

/// One measured point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    /// Concurrent workers.
    pub workers: u32,
    /// Leases per claim.
    pub batch: u32,
    /// Tasks per second.
    pub tasks_per_s: f64,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// The chart, with the baseline drawn as a dashed line.
pub(crate) fn svg(title: &str, points: &[Point], baseline: f64) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 150.0, 40.0, 50.0);
    let mut workers: Vec<u32> = points.iter().map(|p| p.workers).collect();
    workers.sort_unstable();
    workers.dedup();
    let mut batches: Vec<u32> = points.iter().map(|p| p.batch).collect();
    batches.sort_unstable();
    batches.dedup();
    let ymax = points
        .iter()
        .map(|p| p.tasks_per_s)
        .fold(baseline, f64::max)
        * 1.1;
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    // Workers on a log2 axis: 1, 2, 4, 8 … evenly spaced.
    let lx = |n: u32| f64::from(n).log2();
    let (x0, x1) = (
        workers.first().map_or(0.0, |&n| lx(n)),
        workers.last().map_or(1.0, |&n| lx(n)),
    );
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let x = |n: u32| left + (lx(n) - x0) / span * (w - left - right);
    let y = |v: f64| top + (1.0 - v / ymax) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{left}" y="22" font-size="14">{}</text>"#,
        escape(title)
    );
    for i in 0..=5 {
        let v = ymax * f64::from(i) / 5.0;
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{:.0}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0,
            v
        );
    }
    for &n in &workers {
        let xx = x(n);
        let _ = write!(
            s,
            r#"<text x="{xx}" y="{}" text-anchor="middle">{n}</text>"#,
            h - bottom + 18.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">workers</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">tasks/s</text>"#,
        (left + w - right) / 2.0,
        h - 10.0,
        h / 2.0,
        h / 2.0
    );
    let yb = y(baseline);
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{}" y1="{yb}" y2="{yb}" stroke="#555" stroke-dasharray="6 4"/><text x="{}" y="{}">baseline {:.0}/s</text>"##,
        w - right,
        w - right + 6.0,
        yb + 4.0,
        baseline
    );
    for (i, &b) in batches.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts: Vec<&Point> = points.iter().filter(|p| p.batch == b).collect();
        pts.sort_by_key(|p| p.workers);
        let path: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.workers), y(p.tasks_per_s)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for p in &pts {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x(p.workers),
                y(p.tasks_per_s)
            );
        }
        let ly = top + 20.0 * i as f64;
        let _ = write!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">batch {b}</text>"#,
            w - right + 6.0,
            w - right + 26.0,
            w - right + 30.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_batch_size() {
        let pts: Vec<Point> = [1, 2, 4]
            .iter()
            .flat_map(|&w| {
                [1, 10].map(|b| Point {
                    workers: w,
                    batch: b,
                    tasks_per_s: f64::from(w * b),
                })
            })
            .collect();
        let s = svg("t <x>", &pts, 5.0);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert_eq!(s.matches("<circle").count(), 6);
        assert!(s.contains("t &lt;x&gt;"));
        assert!(s.contains("baseline 5/s"));
    }
}
