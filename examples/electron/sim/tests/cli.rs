//! The binary: plays the story (exit 0 with v2 confirmed, the timeline, the summary, `--json`)
//! and refuses bad options with status 3.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_electron-sim"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn plays_the_story_prints_timeline_and_summary_and_writes_json() {
    let json = tempfile::tempdir().unwrap();
    let path = json.path().join("s.json");
    let out = run(&[
        "--image-size",
        "8192",
        "--awake-budget-ms",
        "12000",
        "--max-extension-ms",
        "0",
        "--faults",
        "cut:install@3",
        "--json",
        path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("image       v2.0.0 (8192 bytes, 16 chunks of 512, counter 2)"));
    assert!(stdout.contains("faults      cut install@3"));
    assert!(stdout.contains("POWER CUT at install flash operation 3"));
    assert!(stdout.contains("rolled back from v3.0.0 to v2.0.0"));
    assert!(stdout.contains("final version                v2.0.0 (confirmed)"));
    assert!(stdout.contains("story: v2 confirmed"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["final_version"]["major"], 2);
    assert_eq!(v["final_confirmed"], true);
    assert_eq!(v["power_cuts"], 1);
    assert_eq!(v["rollback"]["server_failed"], 1);
    assert!(v["idle_wake"]["bytes_up"].as_u64().unwrap() > 0);
}

#[test]
fn bad_options_are_refused_with_status_3() {
    for args in [
        &["--faults", "cut:boot@1"][..],
        &["--chunk-size", "1024"][..],
        &["--chunk-size", "1000"][..],
        &["--loss", "2"][..],
        &["--initial-percent", "101"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
    }
}

#[test]
fn fleet_plays_a_staged_rollout_with_a_progress_bar() {
    let out = run(&[
        "--fleet",
        "3",
        "--initial-percent",
        "34",
        "--image-size",
        "4096",
        "--awake-budget-ms",
        "12000",
        "--max-extension-ms",
        "0",
        "--faults",
        "none",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr.contains("3/3 devices on v2, confirmed"));
    assert!(stdout.contains("devices confirmed on v2      3 / 3"));
    // Which devices a share takes is the server's hash; the stages start at 34 %.
    assert!(stdout.contains("rollout shares               34%"));
}
