//! The binary: sets a run up and says the wake cycle is not wired (status 2), never a story;
//! refuses bad options with status 3.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_electron-sim"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sets_up_prints_the_plan_and_stops_with_status_2() {
    let json = tempfile::tempdir().unwrap();
    let path = json.path().join("s.json");
    let out = run(&[
        "--image-size",
        "8192",
        "--faults",
        "cut:install@3",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("image       v2.0.0 (8192 bytes, 8 chunks of 1024, counter 2)"));
    assert!(stdout.contains("release     v2 queued as rollout 1"));
    assert!(stdout.contains("faults      cut install@3"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not wired"));
    assert!(!path.exists(), "no summary without a story");
}

#[test]
fn bad_options_are_refused_with_status_3() {
    for args in [
        &["--faults", "cut:boot@1"][..],
        &["--chunk-size", "1000"][..],
        &["--loss", "2"][..],
        &["--initial-percent", "101"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
    }
}
