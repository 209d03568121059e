//! The binary as a person or a script runs it: one JSON object with `--json`, one error line
//! on stderr and a non-zero exit on failure, nothing half-written left behind.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use common::{Killed, TIME_LIMIT, bin, command, lines, put_dag_cbor, s};
use serde_json::Value;

/// A new temporary folder, and the path of a node's data folder in it.
fn node_dir() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("node");
    (temp, dir)
}

/// Runs `bitswap-node --data-dir DIR ARGS...`.
fn node(data_dir: &Path, args: &[&str]) -> Output {
    command(data_dir, args).output().expect("the binary runs")
}

/// Runs a command that must succeed with `--json` and returns its one JSON object.
fn json(data_dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = node(data_dir, &all);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    let value: Value = serde_json::from_str(&stdout).unwrap();
    assert!(value.is_object());
    value
}

/// Runs a command that must fail: one line on stderr, nothing on stdout.
fn fails(data_dir: &Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--json");
    let output = node(data_dir, &all);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}

#[test]
fn add_then_export_round_trips_a_file() {
    let (temp, dir) = node_dir();
    let input = temp.path().join("input");
    let data: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&input, &data).unwrap();

    let added = json(&dir, &["add", s(&input)]);
    let root = added["root"].as_str().unwrap().to_owned();
    assert!(root.starts_with("Qm"));
    assert_eq!(added["bytes"], 600_000);
    // Three leaves and their parent.
    assert_eq!(added["blocks"], 4);
    assert!(added["seconds"].as_f64().unwrap() >= 0.0);

    let out = temp.path().join("out");
    let exported = json(&dir, &["export", &root, "-o", s(&out)]);
    assert_eq!(exported["bytes"], 600_000);
    assert_eq!(exported["kind"], "file");
    assert_eq!(fs::read(&out).unwrap(), data);

    // The target exists now: refused, and left as it was.
    let error = fails(&dir, &["export", &root, "-o", s(&out)]);
    assert!(error.contains("exists"), "{error}");
    assert_eq!(fs::read(&out).unwrap(), data);

    // Human output names the root.
    let output = node(&dir, &["add", s(&input)]);
    assert!(String::from_utf8(output.stdout).unwrap().contains(&root));
}

#[test]
fn well_known_cids() {
    let (temp, dir) = node_dir();
    let empty = temp.path().join("empty");
    fs::write(&empty, b"").unwrap();
    let v0 = json(&dir, &["add", s(&empty)]);
    assert_eq!(v0["root"], "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
    let v1 = json(&dir, &["add", "--cid-version", "1", s(&empty)]);
    assert_eq!(
        v1["root"],
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    );
    // CIDv1 with UnixFS leaves when raw leaves are turned off.
    let v1_pb = json(
        &dir,
        &["add", "--cid-version", "1", "--raw-leaves=false", s(&empty)],
    );
    assert!(v1_pb["root"].as_str().unwrap().starts_with("bafybei"));
    let empty_dir = temp.path().join("empty-dir");
    fs::create_dir(&empty_dir).unwrap();
    let d = json(&dir, &["add", s(&empty_dir)]);
    assert_eq!(d["root"], "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
}

#[test]
fn directories_round_trip() {
    let (temp, dir) = node_dir();
    let input = temp.path().join("tree");
    fs::create_dir_all(input.join("sub")).unwrap();
    fs::write(input.join("a"), b"alpha").unwrap();
    fs::write(input.join("sub/b"), vec![9u8; 300_000]).unwrap();
    let added = json(&dir, &["add", s(&input)]);
    let out = temp.path().join("copy");
    let exported = json(
        &dir,
        &["export", added["root"].as_str().unwrap(), "-o", s(&out)],
    );
    assert_eq!(exported["kind"], "directory");
    assert_eq!(fs::read(out.join("a")).unwrap(), b"alpha");
    assert_eq!(fs::read(out.join("sub/b")).unwrap(), vec![9u8; 300_000]);
}

#[test]
fn blocks_put_and_get() {
    let (temp, dir) = node_dir();
    let input = temp.path().join("block");
    fs::write(&input, b"a raw block").unwrap();
    let put = json(&dir, &["block", "put", s(&input)]);
    let cid = put["cid"].as_str().unwrap().to_owned();
    assert!(cid.starts_with("bafkrei"), "{cid}");
    assert_eq!(put["size"], 11);

    // Raw bytes on stdout without --json, hex with it, a new file with -o.
    let output = node(&dir, &["block", "get", &cid]);
    assert!(output.status.success());
    assert_eq!(output.stdout, b"a raw block");
    let got = json(&dir, &["block", "get", &cid]);
    assert_eq!(got["data_hex"], "612072617720626c6f636b");
    let out = temp.path().join("copy");
    json(&dir, &["block", "get", &cid, "-o", s(&out)]);
    assert_eq!(fs::read(&out).unwrap(), b"a raw block");

    // CIDv0 is dag-pb only, and a dag-pb block must decode as one.
    fails(&dir, &["block", "put", "--cid-version", "0", s(&input)]);
    let garbage = temp.path().join("garbage");
    fs::write(&garbage, [0xff, 0xff]).unwrap();
    fails(&dir, &["block", "put", "--codec", "dag-pb", s(&garbage)]);
    let node = temp.path().join("node.pb");
    // The empty file's node.
    fs::write(&node, [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]).unwrap();
    let v0 = json(
        &dir,
        &[
            "block",
            "put",
            "--cid-version",
            "0",
            "--codec",
            "dag-pb",
            s(&node),
        ],
    );
    assert_eq!(v0["cid"], "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");

    // A block that is not there.
    let error = fails(
        &dir,
        &[
            "block",
            "get",
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        ],
    );
    assert!(error.contains("not in the store"), "{error}");
    // Too large for a block.
    let large = temp.path().join("large");
    fs::write(&large, vec![0u8; 2 * 1024 * 1024 + 1]).unwrap();
    fails(&dir, &["block", "put", s(&large)]);
}

/// `car export` of a dag-cbor root walks the CIDs in it: a root linking to a raw block and to
/// another dag-cbor node, which links to a second raw block and to the first again. The CAR
/// holds the four blocks, each once, and moves them to another store.
#[test]
fn car_export_walks_dag_cbor_links() {
    let temp = tempfile::tempdir().unwrap();
    let (a, b) = (temp.path().join("a"), temp.path().join("b"));
    let cids = put_dag_cbor(&a, temp.path());
    let root = &cids[0];
    let car = temp.path().join("dag.car");
    let exported = json(&a, &["car", "export", root, "-o", s(&car)]);
    assert_eq!(exported["blocks"], 4, "{exported}");
    let imported = json(&b, &["car", "import", s(&car)]);
    assert_eq!(imported["roots"], serde_json::json!([root]));
    assert_eq!(imported["blocks"], 4);
    for cid in &cids {
        let (from_a, from_b) = (
            node(&a, &["block", "get", cid]),
            node(&b, &["block", "get", cid]),
        );
        assert!(from_b.status.success(), "{cid}");
        assert_eq!(from_a.stdout, from_b.stdout);
    }
    // A block that is not dag-cbor is refused as one.
    let bad = temp.path().join("bad");
    fs::write(&bad, b"\x9f\xff").unwrap();
    fails(&a, &["block", "put", "--codec", "dag-cbor", s(&bad)]);
}

#[test]
fn car_moves_a_dag_between_stores() {
    let temp = tempfile::tempdir().unwrap();
    let (a, b) = (temp.path().join("a"), temp.path().join("b"));
    let input = temp.path().join("input");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 13) as u8).collect();
    fs::write(&input, &data).unwrap();
    let root = json(&a, &["add", "--cid-version", "1", s(&input)])["root"]
        .as_str()
        .unwrap()
        .to_owned();
    let car = temp.path().join("dag.car");
    let exported = json(&a, &["car", "export", &root, "-o", s(&car)]);
    assert_eq!(exported["blocks"], 4);
    assert!(exported["bytes"].as_u64().unwrap() > 700_000);
    fails(&a, &["car", "export", &root, "-o", s(&car)]);

    let imported = json(&b, &["car", "import", s(&car)]);
    assert_eq!(imported["roots"], serde_json::json!([root]));
    assert_eq!(imported["blocks"], 4);
    let out = temp.path().join("out");
    json(&b, &["export", &root, "-o", s(&out)]);
    assert_eq!(fs::read(&out).unwrap(), data);

    // A damaged CAR is refused.
    let mut bytes = fs::read(&car).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let bad = temp.path().join("bad.car");
    fs::write(&bad, &bytes).unwrap();
    fails(&temp.path().join("c"), &["car", "import", s(&bad)]);
    // Not a CAR at all.
    fails(&temp.path().join("c"), &["car", "import", s(&input)]);
}

#[test]
fn identity_persists_with_private_mode() {
    let (_temp, dir) = node_dir();
    let first = json(&dir, &["id"])["peer_id"].as_str().unwrap().to_owned();
    assert!(first.starts_with("12D3KooW"), "ed25519 peer id: {first}");
    assert_eq!(json(&dir, &["id"])["peer_id"], first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn bad_input_is_one_error_line() {
    let (temp, dir) = node_dir();
    let error = fails(&dir, &["add", s(&temp.path().join("missing"))]);
    assert!(error.contains("missing"), "{error}");
    fails(&dir, &["add", "--chunk-size", "0", s(temp.path())]);
    fails(
        &dir,
        &[
            "export",
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
            "-o",
            s(&temp.path().join("x")),
        ],
    );
    assert!(!temp.path().join("x").exists());
}

/// Boolean flags read as kubo's do: a plain `--flag` never takes the next argument as its
/// value, and `--flag=false` still turns it off.
#[test]
fn boolean_flags_never_take_the_next_argument() {
    let (temp, dir) = node_dir();
    let input = temp.path().join("input");
    fs::write(&input, vec![7u8; 300_000]).unwrap();

    // Two chunks: raw leaves under a CIDv0 root, as kubo's `add --raw-leaves FILE`.
    let raw = json(&dir, &["add", "--raw-leaves", s(&input)]);
    let pb = json(&dir, &["add", "--raw-leaves=false", s(&input)]);
    let default = json(&dir, &["add", s(&input)]);
    assert_eq!(pb["root"], default["root"]);
    assert_ne!(raw["root"], default["root"]);
    assert_eq!(
        json(&dir, &["add", "--raw-leaves=true", s(&input)])["root"],
        raw["root"]
    );
    // The flag before the path, on a command with other flags after it.
    let v1 = json(
        &dir,
        &["add", "--raw-leaves", s(&input), "--cid-version", "1"],
    );
    assert!(v1["root"].as_str().unwrap().starts_with("bafy"), "{v1}");

    // `--hidden` and `--json` take `=BOOL` too, and never the next argument.
    let tree = temp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join(".dot"), b"hidden").unwrap();
    fs::write(tree.join("seen"), b"seen").unwrap();
    let with = json(&dir, &["add", "--hidden", s(&tree)]);
    let without = json(&dir, &["add", "--hidden=false", s(&tree)]);
    assert_ne!(with["root"], without["root"]);
    assert_eq!(without["root"], json(&dir, &["add", s(&tree)])["root"]);
    let output = node(&dir, &["--json=false", "add", s(&input)]);
    assert!(output.status.success());
    assert!(!output.stdout.starts_with(b"{"), "{:?}", output.stdout);
    let output = node(&dir, &["add", "--json", s(&input)]);
    assert!(output.status.success());
    assert!(output.stdout.starts_with(b"{"), "{:?}", output.stdout);
}

/// `--help` of every command ends with an example.
#[test]
fn every_help_shows_an_example() {
    let (_temp, dir) = node_dir();
    for command in [
        &[][..],
        &["add"],
        &["export"],
        &["serve"],
        &["get"],
        &["block"],
        &["block", "get"],
        &["block", "put"],
        &["car"],
        &["car", "export"],
        &["car", "import"],
        &["id"],
    ] {
        for help in ["--help", "-h"] {
            let mut args = command.to_vec();
            args.push(help);
            let output = node(&dir, &args);
            assert!(output.status.success(), "{args:?}");
            let text = String::from_utf8(output.stdout).unwrap();
            let example = text
                .split_once("Example")
                .unwrap_or_else(|| panic!("{args:?} shows no example: {text}"))
                .1;
            let mut expected = vec!["bitswap-node"];
            expected.extend(command.iter().copied());
            assert!(
                example.contains(&expected.join(" ")),
                "{args:?}: the example does not run {expected:?}: {text}"
            );
        }
    }
}

/// Starts `serve FILE` (output for people) with `path` as PATH, the temporary directory in
/// `tmp`, and, with `by_cargo`, the variables `cargo run` sets; returns the process and the
/// command of its "fetch it with" hint.
fn serve_hint(
    data_dir: &Path,
    file: &Path,
    path: &Path,
    tmp: &Path,
    by_cargo: bool,
) -> (Killed, String) {
    let mut serve = command(data_dir, &["serve", s(file)]);
    serve.env("PATH", path).env("TMPDIR", tmp);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CARGO") {
            serve.env_remove(name);
        }
    }
    if by_cargo {
        serve
            .env("CARGO", "cargo")
            .env("CARGO_PKG_NAME", "bitswap-node");
    }
    let mut child = serve.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let serve = Killed(child);
    let lines = lines(stdout);
    let mut hint = None;
    loop {
        let line = lines
            .recv_timeout(TIME_LIMIT)
            .expect("serve printed its lines in time");
        if let Some(command) = line.strip_prefix("fetch it with: ") {
            hint = Some(command.to_owned());
        }
        if line == "serving until Ctrl-C" {
            break;
        }
    }
    (serve, hint.expect("a hint"))
}

/// The command `serve` prints to fetch what it serves runs as printed: the binary's full path
/// when it is not on PATH (as after `cargo build`), its name when it is, and `cargo run` when
/// cargo started it; with a data directory of its own (the served one is in use).
#[test]
fn the_hint_of_serve_runs_as_printed() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("file");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&file, &data).unwrap();
    let tmp = temp.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let system = Path::new("/usr/bin:/bin");
    let exe = fs::canonicalize(bin()).unwrap();

    let (serve, hint) = serve_hint(&temp.path().join("node"), &file, system, &tmp, false);
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words[0], s(&exe), "{hint}");
    assert_eq!(words[1], "--data-dir", "{hint}");
    assert!(words[2].starts_with(s(&tmp)), "{hint}");
    // Run it in a directory of its own: it writes the CID there.
    let cwd = temp.path().join("cwd");
    fs::create_dir(&cwd).unwrap();
    let mut get = Command::new(words[0]);
    get.args(&words[1..])
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = Killed(get.spawn().unwrap()).output(&hint, TIME_LIMIT);
    assert!(
        output.status.success(),
        "{hint}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cid = words[words.iter().position(|w| *w == "get").unwrap() + 1];
    assert_eq!(fs::read(cwd.join(cid)).unwrap(), data);
    drop(serve);

    // On PATH (a link to the binary): by its name.
    let bin_dir = temp.path().join("bin");
    fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(&exe, bin_dir.join("bitswap-node")).unwrap();
    let path = format!("{}:{}", s(&bin_dir), s(system));
    let (serve, hint) = serve_hint(
        &temp.path().join("node"),
        &file,
        Path::new(&path),
        &tmp,
        false,
    );
    assert!(hint.starts_with("bitswap-node --data-dir "), "{hint}");
    drop(serve);

    // Started by `cargo run`: the same again.
    let (_serve, hint) = serve_hint(&temp.path().join("node"), &file, system, &tmp, true);
    assert!(hint.starts_with("cargo run "), "{hint}");
    assert!(hint.contains(" -p bitswap-node -- --data-dir "), "{hint}");
}
