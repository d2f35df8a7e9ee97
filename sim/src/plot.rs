//! The report's figures as plain SVG (no plotting dependency): load vs provisioned capacity over
//! time per strategy, the cost breakdown per strategy, and the latency CCDF — the figures of the
//! MArk paper.

use std::fmt::Write as _;

use super::report::Summary;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(w: u32, h: u32, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2,
        esc(title)
    )
}

fn polyline(pts: &[(f64, f64)], color: &str, width: f64, dash: bool) -> String {
    let mut s = String::new();
    for (x, y) in pts {
        let _ = write!(s, "{x:.1},{y:.1} ");
    }
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"{} points=\"{s}\"/>\n",
        if dash {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        }
    )
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * e {
            return m * e;
        }
    }
    10.0 * e
}

/// Load vs provisioned capacity over time, one panel per strategy.
pub fn capacity(s: &Summary) -> String {
    let (pw, ph) = (760.0, 150.0);
    let n = s.policies.len().max(1);
    let h = 40 + n as u32 * (ph as u32 + 30);
    let mut out = header(pw as u32 + 80, h, "Load vs provisioned capacity (req/s)");
    let hours = s.duration_s / 3600.0;
    let ymax = nice_max(
        s.policies
            .iter()
            .flat_map(|p| p.timeline.iter().map(|x| x.load_rps.max(x.capacity_rps)))
            .fold(0.0, f64::max),
    );
    for (k, p) in s.policies.iter().enumerate() {
        let (x0, y0) = (60.0, 40.0 + k as f64 * (ph + 30.0));
        let _ = write!(
            out,
            "<rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>\n<text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{ymax}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n",
            x0 + 6.0,
            y0 + 14.0,
            esc(&p.label()),
            x0 - 4.0,
            y0 + 10.0,
            x0 - 4.0,
            y0 + ph
        );
        let sx = |t: f64| x0 + t / 3600.0 / hours.max(1e-9) * pw;
        let sy = |v: f64| y0 + ph - (v / ymax).min(1.0) * ph;
        let load: Vec<(f64, f64)> = p
            .timeline
            .iter()
            .map(|x| (sx(x.t), sy(x.load_rps)))
            .collect();
        let cap: Vec<(f64, f64)> = p
            .timeline
            .iter()
            .map(|x| (sx(x.t), sy(x.capacity_rps)))
            .collect();
        let lam: Vec<(f64, f64)> = p
            .timeline
            .iter()
            .map(|x| (sx(x.t), sy(x.lambda_rps)))
            .collect();
        out.push_str(&polyline(&load, "#555", 1.0, false));
        out.push_str(&polyline(&cap, COLORS[k % COLORS.len()], 1.6, false));
        if p.lambda_invocations > 0 {
            out.push_str(&polyline(&lam, "#ff7f0e", 1.0, true));
        }
    }
    let _ = write!(
        out,
        "<text x=\"60\" y=\"{}\">x: hours (0–{hours:.1}); grey: load; colour: capacity of serving instances; dashed orange: Lambda req/s</text>\n</svg>\n",
        h - 8
    );
    out
}

/// Cost per strategy, stacked by backend.
pub fn cost(s: &Summary) -> String {
    let bar_h = 26.0;
    let n = s.policies.len();
    let mut keys: Vec<String> = s
        .policies
        .iter()
        .flat_map(|p| p.cost_by_backend.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    let h = 60 + n as u32 * (bar_h as u32 + 10) + 20 * keys.len() as u32;
    let mut out = header(900, h, "Cost by backend (USD)");
    let xmax = nice_max(s.policies.iter().map(|p| p.total_cost).fold(0.0, f64::max));
    let (x0, w) = (170.0, 640.0);
    for (k, p) in s.policies.iter().enumerate() {
        let y = 40.0 + k as f64 * (bar_h + 10.0);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            y + bar_h / 2.0 + 4.0,
            esc(&p.label())
        );
        let mut x = x0;
        for (ki, key) in keys.iter().enumerate() {
            let v = p.cost_by_backend.get(key).copied().unwrap_or(0.0);
            let bw = v / xmax * w;
            if bw > 0.0 {
                let _ = writeln!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{bar_h}\" fill=\"{}\"><title>{} ${v:.2}</title></rect>",
                    COLORS[ki % COLORS.len()],
                    esc(key)
                );
            }
            x += bw;
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\">${:.2}</text>",
            x + 4.0,
            y + bar_h / 2.0 + 4.0,
            p.total_cost
        );
    }
    let ly = 50.0 + n as f64 * (bar_h + 10.0);
    for (ki, key) in keys.iter().enumerate() {
        let y = ly + ki as f64 * 20.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x0}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            COLORS[ki % COLORS.len()],
            x0 + 18.0,
            y + 10.0,
            esc(key)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Latency CCDF per strategy (log-log).
pub fn ccdf(s: &Summary) -> String {
    let (x0, y0, w, h) = (70.0, 40.0, 700.0, 380.0);
    let mut out = header(920, 470, "Latency CCDF: share of requests slower than x");
    let (lx_min, lx_max) = (-1.0f64, 5.0f64); // 0.1 ms .. 100 s
    let (ly_min, ly_max) = (-6.0f64, 0.0f64);
    let sx =
        |ms: f64| x0 + ((ms.max(1e-3).log10() - lx_min) / (lx_max - lx_min)).clamp(0.0, 1.0) * w;
    let sy = |f: f64| {
        y0 + (1.0 - ((f.max(1e-9).log10() - ly_min) / (ly_max - ly_min)).clamp(0.0, 1.0)) * h
    };
    let _ = writeln!(
        out,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for e in lx_min as i32..=lx_max as i32 {
        let x = sx(10f64.powi(e));
        let _ = writeln!(out, "<line x1=\"{x:.1}\" y1=\"{y0}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", y0 + h, y0 + h + 14.0, 10f64.powi(e));
    }
    for e in ly_min as i32..=ly_max as i32 {
        let y = sy(10f64.powi(e));
        let _ = writeln!(out, "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">1e{e}</text>", x0 + w, x0 - 4.0, y + 4.0);
    }
    let slo = sx(s.slo_ms);
    let _ = writeln!(
        out,
        "<line x1=\"{slo:.1}\" y1=\"{y0}\" x2=\"{slo:.1}\" y2=\"{}\" stroke=\"#000\" stroke-dasharray=\"2 2\"/><text x=\"{slo:.1}\" y=\"{}\">SLO</text>",
        y0 + h,
        y0 - 4.0
    );
    for (k, p) in s.policies.iter().enumerate() {
        // a step curve from (fastest, 1) down to the axis floor past the slowest request
        let mut pts: Vec<(f64, f64)> = Vec::with_capacity(p.ccdf.len() * 2 + 1);
        let mut prev = 1.0;
        for (ms, f) in &p.ccdf {
            pts.push((sx(*ms), sy(prev)));
            pts.push((sx(*ms), sy(*f)));
            prev = *f;
        }
        out.push_str(&polyline(&pts, COLORS[k % COLORS.len()], 1.5, p.spot));
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>",
            x0 + w + 8.0,
            y0 + 14.0 + k as f64 * 16.0,
            COLORS[k % COLORS.len()],
            esc(&p.label())
        );
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">latency, ms (log)</text>\n</svg>\n",
        x0 + w / 2.0,
        y0 + h + 32.0
    );
    out
}
