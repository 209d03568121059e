//! The `swarm` scenario's table (`swarm.md`) and plot (`swarm.svg`), drawn by hand as `load`'s.

use std::{fmt::Write as _, path::PathBuf};

use serde_json::Value;

use super::CASES;

/// Writes `swarm.md` and `swarm.svg` to `$CARGO_TARGET_DIR/net-bench/` (or `target/net-bench/`)
/// and the table to stderr.
pub(super) fn write(rows: &[Value]) {
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("net-bench");
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {error}", dir.display());
        return;
    }
    let table = table(rows);
    let md = dir.join("swarm.md");
    let plot = dir.join("swarm.svg");
    match std::fs::write(&md, &table).and_then(|()| std::fs::write(&plot, svg(rows))) {
        Ok(()) => eprintln!(
            "swarm: table {} and plot {}\n{table}",
            md.display(),
            plot.display()
        ),
        Err(error) => eprintln!("cannot write the swarm report: {error}"),
    }
}

fn number(row: &Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or(f64::NAN)
}

fn table(rows: &[Value]) -> String {
    let mut table = String::from(
        "| case | links (MB/s, ms one way) | run | time s | MB/s | of links | duplicates % of file | seed shares % | messages sent | wants timed out | longest stall ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let links: Vec<String> = row["links"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{}@{}", l["mb_s"], l["one_way_ms"]))
            .collect();
        let case = row["case"].as_str().unwrap_or("?");
        let run = &row["run"];
        if row["failed"] == true && row.get("seconds").is_none() {
            let error = row["error"].as_str().unwrap_or("?");
            let _ = writeln!(
                table,
                "| {case} | {} | {run} | failed: {error} | | | | | | | |",
                links.join(", ")
            );
            continue;
        }
        let shares: Vec<String> = row["seed_shares"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| format!("{:.0}", s.as_f64().unwrap_or(f64::NAN) * 100.0))
            .collect();
        let (time, mb_s, fraction) = if row["failed"] == true {
            (
                format!(
                    "failed after {:.1}: {}",
                    number(row, "seconds"),
                    row["error"].as_str().unwrap_or("?")
                ),
                "-".to_string(),
                "-".to_string(),
            )
        } else {
            (
                format!("{:.2}", number(row, "seconds")),
                format!("{:.1}", number(row, "mb_s")),
                format!("{:.2}", number(row, "fraction_of_links")),
            )
        };
        let _ = writeln!(
            table,
            "| {case} | {} | {run} | {time} | {mb_s} | {fraction} | {:.1} | {} | {} | {} | {:.0} |",
            links.join(", "),
            number(row, "duplicate_pct_of_file"),
            shares.join(" / "),
            row["messages_sent"],
            row["wants_timed_out"],
            number(row, "longest_stall_ms"),
        );
    }
    table
}

/// A bar per case: the median fraction of the links used over its runs (each run a dot),
/// with issue 19's target where it sets one against the links alone.
fn svg(rows: &[Value]) -> String {
    let (w, h, left, bottom, top) = (640.0, 360.0, 60.0, 50.0, 30.0);
    let plot_h = h - bottom - top;
    let y = |v: f64| h - bottom - v.clamp(0.0, 1.0) * plot_h;
    let slot = (w - left - 20.0) / CASES.len() as f64;
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{cx}' y='18' text-anchor='middle'>our client: fraction of the link rates used (bar: median, dots: runs, dashes: target)</text>\n\
         <line x1='{left}' y1='{b}' x2='{r}' y2='{b}' stroke='black'/>\n\
         <line x1='{left}' y1='{top}' x2='{left}' y2='{b}' stroke='black'/>\n\
         <text x='15' y='{cy}' transform='rotate(-90 15 {cy})' text-anchor='middle'>fraction of links</text>\n",
        b = h - bottom,
        r = w - 20.0,
        cx = w / 2.0,
        cy = (h - bottom + top) / 2.0,
    );
    for tick in 0..=4 {
        let v = f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            "<text x='{:.1}' y='{:.1}' text-anchor='end'>{v:.2}</text>\n<line x1='{left}' y1='{yy:.1}' x2='{:.1}' y2='{yy:.1}' stroke='#dddddd'/>",
            left - 6.0,
            y(v) + 4.0,
            w - 20.0,
            yy = y(v),
        );
    }
    for (i, case) in CASES.iter().enumerate() {
        let x0 = left + slot * i as f64;
        let mid = x0 + slot / 2.0;
        let runs: Vec<f64> = rows
            .iter()
            .filter(|r| r["case"] == case.name)
            .map(|r| r["fraction_of_links"].as_f64().unwrap_or(0.0))
            .collect();
        if !runs.is_empty() {
            let median = crate::net::median(&runs);
            let _ = writeln!(
                svg,
                "<rect x='{:.1}' y='{:.1}' width='{:.1}' height='{:.1}' fill='#1f77b4'/>\n<text x='{mid:.1}' y='{:.1}' text-anchor='middle'>{median:.2}</text>",
                x0 + slot * 0.2,
                y(median),
                slot * 0.6,
                h - bottom - y(median),
                y(median) - 4.0,
            );
            for v in &runs {
                let _ = writeln!(
                    svg,
                    "<circle cx='{mid:.1}' cy='{:.1}' r='3' fill='#ff7f0e'/>",
                    y(*v)
                );
            }
        }
        if let Some(target) = case.target {
            let _ = writeln!(
                svg,
                "<line x1='{:.1}' y1='{yy:.1}' x2='{:.1}' y2='{yy:.1}' stroke='#d62728' stroke-width='2' stroke-dasharray='6 3'/>",
                x0 + slot * 0.1,
                x0 + slot * 0.9,
                yy = y(target),
            );
        }
        let _ = writeln!(
            svg,
            "<text x='{mid:.1}' y='{:.1}' text-anchor='middle'>{}</text>",
            h - bottom + 18.0,
            case.name
        );
    }
    svg.push_str("</svg>\n");
    svg
}
