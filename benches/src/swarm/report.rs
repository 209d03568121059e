//! The `swarm` scenario's table (`NAME.md`) and plot (`NAME.svg`), drawn by hand as `load`'s.

use std::{fmt::Write as _, path::PathBuf};

use serde_json::Value;

use super::cases::{Case, Check, ClientKind, SeedKind};

/// Writes `NAME.md` and `NAME.svg` to `$CARGO_TARGET_DIR/net-bench/` (or `target/net-bench/`)
/// and the table to stderr.
pub(super) fn write(name: &str, cases: &[&Case], rows: &[Value]) {
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("net-bench");
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {error}", dir.display());
        return;
    }
    let table = table(rows);
    let md = dir.join(format!("{name}.md"));
    let plot = dir.join(format!("{name}.svg"));
    match std::fs::write(&md, &table).and_then(|()| std::fs::write(&plot, svg(cases, rows))) {
        Ok(()) => eprintln!(
            "{name}: table {} and plot {}\n{table}",
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
        "| case | client | seeds | links (MB/s@ms one way) | run | leech | time s | MB/s | of links | duplicates % of file | link shares % | messages sent | wants timed out | longest stall ms | targets |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let links: Vec<String> = row["links"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{}@{}", l["mb_s"], l["one_way_ms"]))
            .collect();
        let text = |key: &str| row[key].as_str().unwrap_or("?").to_string();
        let leech = if row["late"] == true {
            format!("{} (late)", row["leech"])
        } else {
            row["leech"].to_string()
        };
        let head = format!(
            "| {} | {} | {} | {} | {} | {leech} |",
            text("case"),
            text("client"),
            text("seeds"),
            links.join(", "),
            row["run"],
        );
        if row["failed"] == true && row.get("seconds").is_none() {
            let _ = writeln!(
                table,
                "{head} failed: {} | | | | | | | | {} |",
                text("error"),
                targets(row)
            );
            continue;
        }
        let percents = |key: &str| -> String {
            row[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| format!("{:.0}", s.as_f64().unwrap_or(f64::NAN) * 100.0))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let mut shares = percents("seed_shares");
        let leech_shares = percents("leech_shares");
        if !leech_shares.is_empty() {
            shares = format!("seeds {shares}, leeches {leech_shares}");
        }
        let (time, mb_s, fraction) = if row["failed"] == true {
            (
                format!(
                    "failed after {:.1}: {}",
                    number(row, "seconds"),
                    text("error")
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
        let or_na = |key: &str| match &row[key] {
            Value::Null => "n/a".to_string(),
            v => v.to_string(),
        };
        let stall_from = if row["stall_from"] == "links" {
            " (links)"
        } else {
            ""
        };
        let dups_from = if row["duplicates_from"] == "links" {
            " (links)"
        } else {
            ""
        };
        let _ = writeln!(
            table,
            "{head} {time} | {mb_s} | {fraction} | {:.1}{dups_from} | {shares} | {} | {} | {:.0}{stall_from} | {} |",
            number(row, "duplicate_pct_of_file"),
            or_na("messages_sent"),
            or_na("wants_timed_out"),
            number(row, "longest_stall_ms"),
            targets(row),
        );
    }
    table.push_str(
        "\nMB/s: 10^6 bytes of the file per second; of links: of the sum of the rates of the links the leech dialled. \
         (links): measured on the links' byte counters (bytes beyond the DAG's, framing included; time with no byte down), \
         not by the client.\n",
    );
    table
}

/// A row's targets: `check: value PASS|FAIL`.
fn targets(row: &Value) -> String {
    row["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let verdict = match t["pass"].as_bool() {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "no comparison row",
            };
            format!(
                "{}: {:.2} {verdict}",
                t["check"].as_str().unwrap_or("?"),
                t["value"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A bar per case, client kind and seed kind: the median fraction of the links used over its
/// rows (each row a dot), coloured by client kind, paler from kubo seeds, with the
/// fraction targets as dashes.
fn svg(cases: &[&Case], rows: &[Value]) -> String {
    let mut groups: Vec<(&Case, ClientKind, SeedKind)> = Vec::new();
    for case in cases {
        for &seeds in case.seeds {
            for &client in case.clients {
                let ran = rows.iter().any(|r| {
                    r["case"] == case.name
                        && r["client"] == client.name()
                        && r["seeds"] == seeds.name()
                });
                if ran {
                    groups.push((case, client, seeds));
                }
            }
        }
    }
    let slot = 26.0;
    let (h, left, bottom, top) = (400.0, 60.0, 110.0, 50.0);
    let w = (left + 20.0 + slot * groups.len() as f64).max(640.0);
    let plot_h = h - bottom - top;
    let y = |v: f64| h - bottom - v.clamp(0.0, 1.0) * plot_h;
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{left}' y='16'>fraction of the link rates used (bar: median, dots: rows, dashes: target); client: \
         <tspan fill='#1f77b4'>ours</tspan> <tspan fill='#ff7f0e'>kubo</tspan> <tspan fill='#9467bd'>kubo-pin</tspan> <tspan fill='#2ca02c'>helia</tspan>; pale: from kubo seeds</text>\n\
         <line x1='{left}' y1='{b}' x2='{r}' y2='{b}' stroke='black'/>\n\
         <line x1='{left}' y1='{top}' x2='{left}' y2='{b}' stroke='black'/>\n\
         <text x='15' y='{cy}' transform='rotate(-90 15 {cy})' text-anchor='middle'>fraction of links</text>\n",
        b = h - bottom,
        r = w - 20.0,
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
    for (i, (case, client, seeds)) in groups.iter().enumerate() {
        let x0 = left + slot * i as f64;
        let mid = x0 + slot / 2.0;
        let colour = match client {
            ClientKind::Ours => "#1f77b4",
            ClientKind::Kubo => "#ff7f0e",
            ClientKind::KuboPin => "#9467bd",
            ClientKind::Helia => "#2ca02c",
        };
        let opacity = if *seeds == SeedKind::Kubo { 0.45 } else { 1.0 };
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| {
                r["case"] == case.name && r["client"] == client.name() && r["seeds"] == seeds.name()
            })
            .map(|r| r["fraction_of_links"].as_f64().unwrap_or(0.0))
            .collect();
        let median = crate::net::median(&values);
        let _ = writeln!(
            svg,
            "<rect x='{:.1}' y='{:.1}' width='{:.1}' height='{:.1}' fill='{colour}' fill-opacity='{opacity}'/>\n<text x='{mid:.1}' y='{:.1}' text-anchor='middle' font-size='9'>{median:.2}</text>",
            x0 + slot * 0.15,
            y(median),
            slot * 0.7,
            h - bottom - y(median),
            y(median) - 3.0,
        );
        for v in &values {
            let _ = writeln!(
                svg,
                "<circle cx='{mid:.1}' cy='{:.1}' r='2.5' fill='black'/>",
                y(*v)
            );
        }
        for target in case.targets {
            if let Check::Fraction(f) = target.check
                && target.client == *client
                && target.seeds == *seeds
            {
                let _ = writeln!(
                    svg,
                    "<line x1='{:.1}' y1='{yy:.1}' x2='{:.1}' y2='{yy:.1}' stroke='#d62728' stroke-width='2' stroke-dasharray='4 2'/>",
                    x0,
                    x0 + slot,
                    yy = y(f),
                );
            }
        }
        let label = format!("{} {}/{}", case.name, client.name(), seeds.name());
        let _ = writeln!(
            svg,
            "<text x='{mid:.1}' y='{:.1}' transform='rotate(-60 {mid:.1} {:.1})' text-anchor='end' font-size='9'>{label}</text>",
            h - bottom + 12.0,
            h - bottom + 12.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}
