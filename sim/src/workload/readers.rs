//! Workload files: rate CSVs (read and written) and MAP directories.

use std::path::Path;

use super::{Workload, WorkloadError};

/// Reads a CSV of rates: one `rate` per line, or `time_s,rate` (the interval then comes from the
/// time column). A header line and `#` comments are skipped.
pub fn read_csv(path: &Path, interval_s: f64) -> Result<Workload, WorkloadError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("workload {}: {e}", path.display()))?;
    parse_csv(&text, &path.display().to_string(), interval_s)
}

/// Parses the text of a rates CSV (see `read_csv`); `origin` names it in errors.
pub fn parse_csv(text: &str, origin: &str, interval_s: f64) -> Result<Workload, WorkloadError> {
    struct Origin<'a>(&'a str);
    impl Origin<'_> {
        fn display(&self) -> &str {
            self.0
        }
    }
    let path = Origin(origin);
    let (mut times, mut rates) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let nums: Vec<f64> = cols.iter().filter_map(|c| c.parse().ok()).collect();
        if nums.len() != cols.len() {
            if rates.is_empty() && times.is_empty() {
                continue; // header
            }
            return Err(format!(
                "workload {}:{}: '{line}' is not numeric",
                path.display(),
                n + 1
            )
            .into());
        }
        let rate = *nums.last().unwrap_or(&f64::NAN);
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(format!(
                "workload {}:{}: rate {rate} must be >= 0",
                path.display(),
                n + 1
            )
            .into());
        }
        if nums.len() >= 2 {
            times.push(nums[0]);
        }
        rates.push(rate);
    }
    if rates.is_empty() {
        return Err(format!("workload {}: no rates", path.display()).into());
    }
    let interval_s = if times.len() >= 2 && times.len() == rates.len() {
        let d = times[1] - times[0];
        if d.is_nan() || d <= 0.0 {
            return Err(format!("workload {}: times must increase", path.display()).into());
        }
        d
    } else {
        interval_s
    };
    Ok(Workload::Rates {
        interval_s,
        rates,
        uniform: false,
    })
}

fn parse_matrix(text: &str, origin: &str) -> Result<Vec<[f64; 2]>, String> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Vec<f64> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{origin}: '{line}': {e}"))?;
        if v.len() != 2 {
            return Err(format!("{origin}: '{line}': expected two numbers"));
        }
        rows.push([v[0], v[1]]);
    }
    Ok(rows)
}

fn check_map(d0: &[[f64; 2]; 2], d1: &[[f64; 2]; 2], origin: &str) -> Result<(), String> {
    let ok = (0..2).all(|i| {
        (0..2).all(|j| d1[i][j].is_finite() && d1[i][j] >= 0.0 && (i == j || d0[i][j] >= 0.0))
            && d0[i][i] <= 0.0
            && ((d0[i][0] + d0[i][1] + d1[i][0] + d1[i][1]).abs() < 1e-6 * (1.0 - d0[i][i]))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{origin}: not a MAP: D1 >= 0, D0 off-diagonal >= 0, D0 diagonal <= 0, and each row of D0 + D1 must sum to 0"
        ))
    }
}

/// Reads a MAP: a directory with, per window, either one file of four rows (D0 then D1) or a
/// pair of files whose names hold `d0` and `d1` (e.g. `D0_3.txt`, `D1_3.txt`); windows in name
/// order. A single file is one window.
pub fn read_map(path: &Path, window_s: f64) -> Result<Workload, WorkloadError> {
    let mut files: Vec<std::path::PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| format!("workload {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    // natural order: by the number in the name, then the name
    let key = |p: &std::path::PathBuf| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let digits: String = name
            .replace("d0", "")
            .replace("d1", "")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        (digits.parse::<u64>().unwrap_or(0), name)
    };
    files.sort_by_key(key);
    let mut windows = Vec::new();
    let mut pending_d0: Option<[[f64; 2]; 2]> = None;
    for f in &files {
        let origin = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|e| format!("{origin}: {e}"))?;
        let rows = parse_matrix(&text, &origin)?;
        let name = key(f).1;
        match rows.len() {
            4 => windows.push(([rows[0], rows[1]], [rows[2], rows[3]])),
            2 if name.contains("d0") => pending_d0 = Some([rows[0], rows[1]]),
            2 if name.contains("d1") => {
                let d0 = pending_d0
                    .take()
                    .ok_or_else(|| format!("{origin}: D1 without a D0 before it"))?;
                windows.push((d0, [rows[0], rows[1]]));
            }
            n => {
                return Err(format!(
                    "{origin}: {n} rows; expected 4 (D0 then D1) or 2 in a file named d0/d1"
                )
                .into())
            }
        }
    }
    if windows.is_empty() {
        return Err(format!("workload {}: no MAP windows", path.display()).into());
    }
    for (i, (d0, d1)) in windows.iter().enumerate() {
        check_map(d0, d1, &format!("{} window {i}", path.display()))?;
    }
    Ok(Workload::Map { window_s, windows })
}

/// Writes rates as `time_s,rate` CSV.
pub fn write_csv(path: &Path, w: &Workload) -> std::io::Result<()> {
    let (Workload::Rates {
        interval_s, rates, ..
    }
    | Workload::Trace {
        interval_s, rates, ..
    }) = w
    else {
        return Err(std::io::Error::other("only rate workloads export to CSV"));
    };
    let mut s = String::from("time_s,rate\n");
    for (i, r) in rates.iter().enumerate() {
        s.push_str(&format!("{},{:.3}\n", i as f64 * interval_s, r));
    }
    std::fs::write(path, s)
}
