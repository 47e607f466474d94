//! Writes `tests/fixtures/format-v1/`: a small store in today's on-disk
//! format plus its JSON Lines export. Committed, it proves later builds still
//! open today's bytes (`tests/format_fixture.rs`). Run it again only when
//! adding a new format version (then keep the old fixture beside it):
//!
//!     cargo run --example make_fixture -- tests/fixtures/format-v1

use mission_bus::{document, Action, AppendOptions, Json, MissionBus, NewMission};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: make_fixture OUT_DIR")?,
    );
    let store = out.join("store");
    if store.exists() {
        return Err(format!("{} exists; remove it first", store.display()).into());
    }
    std::fs::create_dir_all(&out)?;
    let bus = MissionBus::builder(&store).snapshot_every(5).open()?;
    bus.create_mission(NewMission::new("fixture-1", "Format fixture").lead("lead"))?;
    bus.join(
        "fixture-1",
        "ada",
        "write",
        json!({"model": "a", "tags": ["x", "é"]}).into(),
    )?;
    bus.join("fixture-1", "bob", "write", Json::empty_object())?;
    bus.join("fixture-1", "rita", "read", Json::empty_object())?;
    bus.publish(
        "fixture-1",
        "ada",
        "plan",
        json!({"steps": [1, 2, 3], "unicode": "日本"}).into(),
    )?;
    let cp = bus.create_checkpoint(
        "fixture-1",
        "ada",
        "half way",
        json!({"cursor": 7}).into(),
        vec!["a.rs".into()],
    )?;
    bus.handoff("fixture-1", "ada", "bob", cp.id, "your turn")?;
    bus.append(
        "fixture-1",
        "lead",
        Action::ChangeRole {
            name: "rita".into(),
            role: "audit".into(),
        },
        &AppendOptions::default(),
    )?;
    bus.create_mission(NewMission::new("fixture-2", "Second").lead("solo"))?;
    bus.publish("fixture-2", "solo", "t", Json::null())?;

    let mut jsonl = String::new();
    for m in ["fixture-1", "fixture-2"] {
        for e in bus.events(m, 1, u64::MAX)? {
            jsonl.push_str(&document::event_to_json(&e?).to_string());
            jsonl.push('\n');
        }
    }
    std::fs::write(out.join("log.jsonl"), jsonl)?;
    println!("wrote {}", out.display());
    Ok(())
}
