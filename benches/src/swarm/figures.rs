//! From a pass's counters to the rows (one JSON object per leech), and the targets
//! checked on the rows of one case and run.
//!
//! - MB/s is 10^6 bytes of the file per second; its fraction is of the sum of the rates of the
//!   links the leech dialled (the seeds', and the earlier leeches' for a late leech), the cut
//!   or stopped seed's included.
//! - Duplicates: our client's own count ([`bitswap::ClientStats::duplicate_bytes`]); for
//!   kubo's and Helia's, the bytes the links carried down beyond the DAG's bytes (so they also
//!   hold the framing: Noise, Yamux, protobuf; `down_beyond_dag_pct` gives the same measure
//!   for our client, to compare). With several leeches that is their average.
//! - Shares: each link's part of all the bytes the links carried down, for all the leeches of
//!   the pass together.
//! - Longest stall: our client's longest gap between two blocks; for the others, the longest
//!   time no link carried a byte down (sampled every [`super::pass::SAMPLE`]).

use serde_json::{Value, json};

use super::{
    cases::{Case, Check, ClientKind, HalfTime, SeedKind},
    pass::{File, LeechOutcome, Pass},
};

/// Which pass a row is from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pair<'a> {
    /// The case.
    pub(super) case: &'a Case,
    /// The leeches' kind.
    pub(super) client: ClientKind,
    /// The seeds' kind.
    pub(super) seeds: SeedKind,
    /// The run's number.
    pub(super) run: usize,
}

/// The start of every row of `pair`: what ran.
fn head(pair: Pair<'_>, file: &File) -> Value {
    let shapes = |links: &[(u64, u64)]| -> Vec<Value> {
        links
            .iter()
            .map(|(rate, delay)| json!({"mb_s": rate, "one_way_ms": delay}))
            .collect()
    };
    json!({
        "scenario": "swarm", "case": pair.case.name, "client": pair.client.name(),
        "seeds": pair.seeds.name(), "run": pair.run,
        "links": shapes(pair.case.links),
        "leech_link": pair.case.late_leech.map(|l| shapes(&[l])),
        "half_time": pair.case.half_time.map(|h| match h {
            HalfTime::Cut => "cut first seed",
            HalfTime::Stop => "stop first seed",
        }),
        "bytes": file.bytes,
    })
}

/// The row of a pass that could not be set up.
pub(super) fn failed(pair: Pair<'_>, file: &File, error: &str) -> Value {
    let mut row = head(pair, file);
    row["leech"] = json!(0);
    row["failed"] = json!(true);
    row["error"] = json!(error);
    row
}

/// One row per leech of `pass`.
pub(super) fn rows(pair: Pair<'_>, file: &File, pass: &Pass) -> Vec<Value> {
    let all_down: u64 = pass.seed_down.iter().chain(&pass.leech_down).sum();
    let share = |bytes: &[u64]| -> Vec<f64> {
        bytes
            .iter()
            .map(|b| *b as f64 / all_down.max(1) as f64)
            .collect()
    };
    let leeches = pass.leeches.len() as u64;
    let beyond = all_down as f64 - (leeches * file.dag_bytes) as f64;
    let beyond_pct = 100.0 * beyond / leeches as f64 / file.bytes as f64;
    let leech_links: u64 =
        pair.case.late_leech.map_or(0, |(rate, _)| rate) * pair.case.leeches as u64;
    pass.leeches
        .iter()
        .enumerate()
        .map(|(index, leech)| {
            let mut links = pair.case.seed_links_mb_s();
            if leech.late {
                links += leech_links;
            }
            let mut row = head(pair, file);
            let figures = json!({
                "leech": index,
                "late": leech.late,
                "links_mb_s": links,
                "seed_down_bytes": pass.seed_down,
                "seed_shares": share(&pass.seed_down),
                "leech_down_bytes": pass.leech_down,
                "leech_shares": share(&pass.leech_down),
                "down_beyond_dag_pct": beyond_pct,
                "links_bypassed": beyond < 0.0,
                "half_time_at_ms": pass.half_time_at.map(|t| t.as_secs_f64() * 1e3),
            });
            extend(&mut row, figures);
            extend(&mut row, leech_figures(leech, links, file, beyond_pct));
            row
        })
        .collect()
}

fn leech_figures(leech: &LeechOutcome, links: u64, file: &File, beyond_pct: f64) -> Value {
    let seconds = leech.time.as_secs_f64();
    let failed = leech.error.is_some();
    let mb_s = (!failed).then(|| file.bytes as f64 / seconds / 1e6);
    let mut figures = json!({
        "failed": failed,
        "error": leech.error,
        "seconds": seconds,
        "mb_s": mb_s,
        "fraction_of_links": mb_s.map(|m| m / links as f64),
    });
    let more = match &leech.ours {
        Some((stats, walk)) => json!({
            "duplicate_bytes": stats.duplicate_bytes,
            "duplicate_pct_of_file": 100.0 * stats.duplicate_bytes as f64 / file.bytes as f64,
            "duplicates_from": "client",
            "dag_blocks": walk.blocks,
            "dag_bytes": walk.bytes,
            "blocks_received": stats.blocks_received,
            "duplicate_blocks": stats.duplicate_blocks,
            "messages_sent": stats.messages_sent,
            "entries_sent": stats.entries_sent,
            "cancels_sent": stats.cancels_sent,
            "wants_timed_out": stats.timeouts,
            "longest_stall_ms": walk.longest_gap.as_secs_f64() * 1e3,
            "stall_from": "blocks",
        }),
        None => json!({
            "duplicate_pct_of_file": beyond_pct.max(0.0),
            "duplicates_from": "links",
            "messages_sent": null,
            "wants_timed_out": null,
            "longest_stall_ms": leech.link_stall.as_secs_f64() * 1e3,
            "stall_from": "links",
        }),
    };
    extend(&mut figures, more);
    figures
}

fn extend(row: &mut Value, more: Value) {
    if let (Some(row), Value::Object(more)) = (row.as_object_mut(), more) {
        row.extend(more);
    }
}

/// Checks `case`'s targets on `rows` (the rows of every pass of one case and run) and writes
/// each result into its row's `targets`: `{check, value, pass}` (`pass` is `null` when the
/// row to compare with is missing).
pub(super) fn check_targets(case: &Case, rows: &mut [Value]) {
    let find = |rows: &[Value], client: ClientKind, seeds: SeedKind| {
        rows.iter().position(|r| {
            r["client"] == client.name() && r["seeds"] == seeds.name() && r["leech"] == 0
        })
    };
    for target in case.targets {
        let Some(at) = find(rows, target.client, target.seeds) else {
            continue;
        };
        let row = &rows[at];
        let ok = row["failed"] != true;
        let number = |row: &Value, key: &str| row[key].as_f64();
        let ratio_to = |other: Option<usize>| -> Option<f64> {
            let other = &rows[other?];
            Some(number(row, "mb_s")? / number(other, "mb_s")?)
        };
        let (value, pass) = match target.check {
            Check::Fraction(min) => {
                let v = number(row, "fraction_of_links");
                (v, Some(ok && v.is_some_and(|v| v >= min)))
            }
            Check::DuplicatesPct(max) => {
                let v = number(row, "duplicate_pct_of_file");
                (v, Some(ok && v.is_some_and(|v| v <= max)))
            }
            Check::StallMs(max) => {
                let v = number(row, "longest_stall_ms");
                (v, Some(ok && v.is_some_and(|v| v <= max)))
            }
            Check::OverKuboClient(min) => {
                // The faster of kubo's rows (a failed one counts as slowest).
                let speed = |i: &usize| number(&rows[*i], "mb_s").unwrap_or(0.0);
                let other = [ClientKind::Kubo, ClientKind::KuboPin]
                    .into_iter()
                    .filter_map(|kubo| find(rows, kubo, target.seeds))
                    .max_by(|a, b| speed(a).total_cmp(&speed(b)));
                let v = ratio_to(other);
                (v, other.map(|_| ok && v.is_some_and(|v| v >= min)))
            }
            Check::OverKuboSeeds(min) => {
                let other = find(rows, target.client, SeedKind::Kubo);
                let v = ratio_to(other);
                (v, other.map(|_| ok && v.is_some_and(|v| v >= min)))
            }
        };
        let result = json!({"check": target.check.label(), "value": value, "pass": pass});
        match rows[at]["targets"].as_array_mut() {
            Some(list) => list.push(result),
            None => rows[at]["targets"] = json!([result]),
        }
    }
}
