//! The README's demo (`scripts/demo.sh`) runs against the real binary and
//! shows a handoff: the second worker resumes from the first one's
//! checkpoint and notes.

mod support;

use std::process::Command;

use support::Server;

#[test]
fn readme_demo_hands_a_task_off() {
    for tool in ["curl", "jq"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!(
                "SKIPPED readme_demo_hands_a_task_off: `{tool}` is not installed (.ci/run installs jq)"
            );
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/demo.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("ARUNTIME_URL", &server.base)
        .env("ARUNTIME_TOKEN", &server.token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        r#""code":"lease_lost""#,
        r#""attempt": 2"#,
        r#""next_row": 601"#,
        "resume at row 601",
        r#"{"status":"done","result":{"imported":1204,"merged":17}}"#,
        r#""done":1"#,
    ] {
        assert!(stdout.contains(want), "missing {want} in:\n{stdout}");
    }
}
