//! The resuming agent's API at the library level: the handoff lifecycle
//! with leases and explicit-time expiry, checkpoints and handoffs as reads,
//! the resume fallback, membership changes, consumer positions and
//! filtered reads. Time is always passed explicitly: no test sleeps.

mod util;

use chrono::{DateTime, Duration, Utc};
use mission_bus::{
    Error, ErrorKind, Event, EventFilter, EventType, HandoffStatus, MissionBus, NewMission,
    ResumeSource, OPERATOR,
};
use serde_json::json;
use tempfile::TempDir;

fn open() -> (TempDir, MissionBus) {
    let dir = tempfile::tempdir().unwrap();
    let bus = util::bus_at(dir.path()).unwrap();
    (dir, bus)
}

/// A lead, three writers and an auditor.
fn mission(bus: &MissionBus) {
    bus.create_mission(NewMission::new("m", "Port the parser").lead("lead"))
        .unwrap();
    for (name, role) in [
        ("ada", "write"),
        ("bob", "write"),
        ("cy", "write"),
        ("audrey", "audit"),
    ] {
        bus.join("m", name, role, json!({}).into()).unwrap();
    }
}

fn checkpoint(bus: &MissionBus, who: &str, n: i64) -> Event {
    bus.create_checkpoint(
        "m",
        who,
        &format!("step {n}"),
        json!({"n": n}).into(),
        vec![],
    )
    .unwrap()
}

fn later(e: &Event, ms: i64) -> DateTime<Utc> {
    e.timestamp + Duration::milliseconds(ms)
}

fn same_as_replay(bus: &MissionBus) {
    assert_eq!(*bus.state("m").unwrap(), bus.rebuild_state("m").unwrap());
}

#[test]
fn offered_accepted_heartbeat_completed() {
    let (_d, bus) = open();
    mission(&bus);
    let cp = checkpoint(&bus, "ada", 1);
    let h = bus.handoff("m", "ada", "bob", cp.id, "parser").unwrap();
    assert_eq!(
        bus.handoff_info("m", &h.id).unwrap().status,
        HandoffStatus::Offered
    );

    // Only the recipient may accept; a lease must be sane.
    let e = bus.accept_handoff("m", "cy", h.id, 30_000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = bus.accept_handoff("m", "bob", h.id, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // Nothing to heartbeat or complete before accepting.
    let e = bus.heartbeat("m", "bob", h.id, 30_000).unwrap_err();
    assert!(matches!(e, Error::HandoffState { .. }), "{e}");

    let acc = bus.accept_handoff("m", "bob", h.id, 30_000).unwrap();
    assert_eq!(acc.event_type(), EventType::HandoffAccepted);
    let info = bus.handoff_info("m", &h.id).unwrap();
    assert_eq!(info.status, HandoffStatus::Accepted);
    let deadline = info.lease_expires_us.unwrap();
    assert_eq!(deadline, acc.timestamp.timestamp_micros() + 30_000_000);
    // Accepting twice is a conflict.
    let e = bus.accept_handoff("m", "bob", h.id, 30_000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);

    let hb = bus.heartbeat("m", "bob", h.id, 60_000).unwrap();
    let info = bus.handoff_info("m", &h.id).unwrap();
    assert_eq!(
        info.lease_expires_us.unwrap(),
        hb.timestamp.timestamp_micros() + 60_000_000
    );
    // The expiry operation leaves a live lease alone.
    assert!(bus
        .expire_leases("m", later(&hb, 59_000))
        .unwrap()
        .is_empty());

    bus.complete_handoff("m", "bob", h.id, "done").unwrap();
    let info = bus.handoff_info("m", &h.id).unwrap();
    assert_eq!(info.status, HandoffStatus::Completed);
    assert_eq!(info.returned_to, None);
    assert!(bus
        .expire_leases("m", later(&hb, 3_600_000))
        .unwrap()
        .is_empty());
    let e = bus.complete_handoff("m", "bob", h.id, "again").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    same_as_replay(&bus);
}

#[test]
fn declined_and_released_work_returns_to_the_sender() {
    let (_d, bus) = open();
    mission(&bus);
    let cp = checkpoint(&bus, "ada", 1);
    let h1 = bus.handoff("m", "ada", "bob", cp.id, "one").unwrap();
    let h2 = bus.handoff("m", "ada", "bob", cp.id, "two").unwrap();

    // Both are listed for bob, newest first, with their status.
    let mine = bus.handoffs("m", Some("bob")).unwrap();
    let ids: Vec<_> = mine.iter().map(|h| h.handoff_id).collect();
    assert_eq!(ids, vec![h2.id, h1.id]);

    // Declining needs an offered handoff; releasing an accepted one.
    let e = bus.release_handoff("m", "bob", h1.id, "").unwrap_err();
    assert!(matches!(e, Error::HandoffState { .. }), "{e}");
    bus.decline_handoff("m", "bob", h1.id, "busy").unwrap();
    bus.accept_handoff("m", "bob", h2.id, 10_000).unwrap();
    let e = bus.decline_handoff("m", "bob", h2.id, "").unwrap_err();
    assert!(matches!(e, Error::HandoffState { .. }), "{e}");
    bus.release_handoff("m", "bob", h2.id, "stuck").unwrap();

    for (id, status) in [
        (h1.id, HandoffStatus::Declined),
        (h2.id, HandoffStatus::Released),
    ] {
        let info = bus.handoff_info("m", &id).unwrap();
        assert_eq!(info.status, status);
        assert_eq!(info.returned_to.as_deref(), Some("ada"));
    }
    let packet = bus.latest_resume_packet("m", "ada").unwrap();
    let returned: Vec<_> = packet.returned.iter().map(|h| h.handoff_id).collect();
    assert_eq!(returned, vec![h2.id, h1.id]);
    same_as_replay(&bus);
}

/// The holder crashes: it stops sending heartbeats, its lease lapses, the
/// expiry (at an explicit time) returns the work to the sender, the sender
/// offers it again, and the next agent resumes from the holder's latest
/// checkpoint, not the one originally offered.
#[test]
fn a_lapsed_lease_returns_the_work_and_the_next_agent_resumes_right() {
    let (dir, bus) = open();
    mission(&bus);
    let cp1 = checkpoint(&bus, "ada", 1);
    let h = bus.handoff("m", "ada", "bob", cp1.id, "parser").unwrap();
    let acc = bus.accept_handoff("m", "bob", h.id, 5_000).unwrap();
    let cp2 = checkpoint(&bus, "bob", 2); // bob's progress before it dies
    let p = bus.latest_resume_packet("m", "bob").unwrap();
    assert_eq!(p.source, ResumeSource::Handoff);
    assert_eq!(p.handoff_status, Some(HandoffStatus::Accepted));
    assert_eq!(
        p.checkpoint.id, cp2.id,
        "the holder resumes from its own progress"
    );

    // bob "crashes": no heartbeat. Before the deadline nothing expires.
    assert!(bus
        .expire_leases("m", later(&acc, 4_999))
        .unwrap()
        .is_empty());
    let expired = bus.expire_leases("m", later(&acc, 5_000)).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].sender, OPERATOR);
    assert_eq!(expired[0].event_type(), EventType::HandoffExpired);
    // Idempotent: a second run finds nothing.
    assert!(bus
        .expire_leases("m", later(&acc, 9_000))
        .unwrap()
        .is_empty());
    // The late heartbeat of the dead holder is refused.
    let e = bus.heartbeat("m", "bob", h.id, 5_000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);

    // The work shows in the sender's resume packet.
    let info = bus.handoff_info("m", &h.id).unwrap();
    assert_eq!(info.status, HandoffStatus::Expired);
    assert_eq!(info.returned_to.as_deref(), Some("ada"));
    assert_eq!(info.resume_checkpoint_id, cp2.id);
    let ada = bus.latest_resume_packet("m", "ada").unwrap();
    assert_eq!(ada.returned.len(), 1);
    assert_eq!(ada.returned[0].resume_checkpoint_id, cp2.id);

    // ada offers it to cy from where bob got to; cy accepts and resumes.
    let h2 = bus
        .handoff(
            "m",
            "ada",
            "cy",
            ada.returned[0].resume_checkpoint_id,
            "take over",
        )
        .unwrap();
    assert!(bus
        .latest_resume_packet("m", "ada")
        .unwrap()
        .returned
        .is_empty());
    bus.accept_handoff("m", "cy", h2.id, 5_000).unwrap();
    let cy = bus.latest_resume_packet("m", "cy").unwrap();
    assert_eq!(cy.handoff.as_ref().map(|e| e.id), Some(h2.id));
    assert_eq!(cy.checkpoint.id, cp2.id);
    same_as_replay(&bus);

    // Replay after a reopen rebuilds the same lifecycle.
    let before = (*bus.state("m").unwrap()).clone();
    drop(bus);
    let bus = util::bus_at(dir.path()).unwrap();
    assert_eq!(*bus.state("m").unwrap(), before);
    assert_eq!(bus.rebuild_state("m").unwrap(), before);
}

#[test]
fn work_of_a_sender_who_left_returns_to_the_lead() {
    let (_d, bus) = open();
    mission(&bus);
    let cp = checkpoint(&bus, "ada", 1);
    let h = bus.handoff("m", "ada", "bob", cp.id, "").unwrap();
    let acc = bus.accept_handoff("m", "bob", h.id, 1_000).unwrap();
    bus.remove_participant("m", "lead", "ada").unwrap();
    bus.expire_leases("m", later(&acc, 1_000)).unwrap();
    let info = bus.handoff_info("m", &h.id).unwrap();
    assert_eq!(info.returned_to.as_deref(), Some("lead"));
    assert_eq!(
        bus.latest_resume_packet("m", "lead")
            .unwrap()
            .returned
            .len(),
        1
    );
}

#[test]
fn resume_falls_back_to_my_latest_checkpoint_and_says_so() {
    let (_d, bus) = open();
    mission(&bus);
    // ezra checkpointed but was never handed work.
    bus.join("m", "ezra", "write", json!({}).into()).unwrap();
    let e = bus.latest_resume_packet("m", "ezra").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    checkpoint(&bus, "ezra", 7);
    checkpoint(&bus, "ada", 8);
    let newest = checkpoint(&bus, "ezra", 12);
    let p = bus.latest_resume_packet("m", "ezra").unwrap();
    assert_eq!(p.source, ResumeSource::Checkpoint);
    assert_eq!(p.handoff, None);
    assert_eq!(p.checkpoint.id, newest.id);
    assert_eq!(bus.latest_checkpoint("m", "ezra").unwrap().id, newest.id);

    // An open handoff wins over the fallback; a completed one does not.
    let h = bus.handoff("m", "ada", "ezra", newest.id, "").unwrap();
    assert_eq!(
        bus.latest_resume_packet("m", "ezra").unwrap().source,
        ResumeSource::Handoff
    );
    bus.accept_handoff("m", "ezra", h.id, 1_000).unwrap();
    bus.complete_handoff("m", "ezra", h.id, "").unwrap();
    let newer = checkpoint(&bus, "ezra", 13);
    let p = bus.latest_resume_packet("m", "ezra").unwrap();
    assert_eq!(
        (p.source, p.checkpoint.id),
        (ResumeSource::Checkpoint, newer.id)
    );
}

#[test]
fn checkpoints_by_id_listed_newest_first_by_sender_and_paged() {
    let (_d, bus) = open();
    mission(&bus);
    let mut by_ada = Vec::new();
    for n in 0..7 {
        by_ada.push(checkpoint(&bus, "ada", n).id);
        checkpoint(&bus, "bob", n);
        bus.publish("m", "ada", "noise", json!(n).into()).unwrap();
    }
    assert_eq!(bus.checkpoint_in("m", &by_ada[3]).unwrap().id, by_ada[3]);
    let all = bus.checkpoints("m", None, None, 100).unwrap();
    assert_eq!(all.len(), 14);
    assert!(all.windows(2).all(|w| w[0].sequence > w[1].sequence));
    let page1 = bus.checkpoints("m", Some("ada"), None, 3).unwrap();
    let page2 = bus
        .checkpoints("m", Some("ada"), Some(page1[2].sequence), 3)
        .unwrap();
    let page3 = bus
        .checkpoints("m", Some("ada"), Some(page2[2].sequence), 3)
        .unwrap();
    let got: Vec<_> = page1
        .iter()
        .chain(&page2)
        .chain(&page3)
        .map(|e| e.id)
        .collect();
    let want: Vec<_> = by_ada.iter().rev().copied().collect();
    assert_eq!(got, want);
    // Another mission's checkpoint does not exist here.
    bus.create_mission(NewMission::new("other", "x").lead("ol"))
        .unwrap();
    let foreign = bus
        .create_checkpoint("other", "ol", "s", json!({}).into(), vec![])
        .unwrap();
    let e = bus.checkpoint_in("m", &foreign.id).unwrap_err();
    assert!(!e.to_string().contains("other"), "{e}");
}

#[test]
fn membership_changes_take_effect_at_once() {
    let (_d, bus) = open();
    mission(&bus);
    let token = bus.issue_token("m", "bob").unwrap();
    assert!(bus.authenticate(&token).unwrap().is_some());

    // Only a lead changes roles or removes.
    let e = bus.change_role("m", "ada", "bob", "read").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let e = bus.remove_participant("m", "ada", "bob").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let e = bus.remove_participant("m", "lead", "lead").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = bus.remove_participant("m", "lead", "ghost").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);

    bus.change_role("m", "lead", "bob", "read").unwrap();
    let e = bus.publish("m", "bob", "t", json!(1).into()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);

    // Work offered to bob returns when bob is removed.
    bus.change_role("m", "lead", "bob", "write").unwrap();
    let cp = checkpoint(&bus, "ada", 1);
    let h = bus.handoff("m", "ada", "bob", cp.id, "").unwrap();
    bus.ack("m", "bob", "main", 3).unwrap();
    let removed = bus.remove_participant("m", "lead", "bob").unwrap();
    assert_eq!(removed.event_type(), EventType::ParticipantRemoved);
    assert!(
        bus.authenticate(&token).unwrap().is_none(),
        "token dead at once"
    );
    let e = bus.publish("m", "bob", "t", json!(1).into()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let info = bus.handoff_info("m", &h.id).unwrap();
    assert_eq!(info.status, HandoffStatus::Revoked);
    assert_eq!(info.returned_to.as_deref(), Some("ada"));
    assert!(bus.consumers("m", Some("bob")).unwrap().is_empty());

    // Re-joining does not revive the old token.
    bus.join("m", "bob", "write", json!({}).into()).unwrap();
    assert!(bus.authenticate(&token).unwrap().is_none());
    same_as_replay(&bus);
}

#[test]
fn self_rotation_revokes_my_older_tokens() {
    let (_d, bus) = open();
    mission(&bus);
    let old = bus.issue_token("m", "ada").unwrap();
    let (new, revoked) = bus.reissue_token("m", "ada").unwrap();
    assert_eq!(revoked, 1);
    assert!(bus.authenticate(&old).unwrap().is_none());
    assert_eq!(bus.authenticate(&new).unwrap().unwrap().name, "ada");
}

#[test]
fn consumer_positions_are_monotone_bounded_and_survive_reopen() {
    let (dir, bus) = open();
    mission(&bus);
    for n in 0..20 {
        bus.publish("m", "ada", "t", json!(n).into()).unwrap();
    }
    assert_eq!(bus.consumer_position("m", "bob", "main").unwrap(), 0);
    assert_eq!(bus.ack("m", "bob", "main", 10).unwrap(), 10);
    assert_eq!(bus.ack("m", "bob", "main", 4).unwrap(), 10, "never back");
    let head = bus.state("m").unwrap().head;
    let e = bus.ack("m", "bob", "main", head + 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = bus.ack("m", "ghost", "main", 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);

    // Reading with the consumer starts after its position.
    let page = bus
        .read_events("m", Some("bob"), &EventFilter::default(), Some("main"))
        .unwrap();
    assert_eq!(page.events.first().map(|e| e.sequence), Some(11));
    // Bounded per participant.
    for i in 1..mission_bus::MAX_CONSUMERS_PER_PARTICIPANT {
        bus.ack("m", "bob", &format!("c{i}"), 1).unwrap();
    }
    let e = bus.ack("m", "bob", "one-too-many", 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(bus.delete_consumer("m", "bob", "c1").unwrap());
    bus.ack("m", "bob", "one-too-many", 1).unwrap();
    // Visible to auditors: every participant's consumers.
    let all = bus.consumers("m", None).unwrap();
    assert_eq!(all.len(), mission_bus::MAX_CONSUMERS_PER_PARTICIPANT);
    drop(bus);
    let bus = util::bus_at(dir.path()).unwrap();
    assert_eq!(bus.consumer_position("m", "bob", "main").unwrap(), 10);
    // Acknowledgements write no log events.
    assert_eq!(bus.state("m").unwrap().head, head);
}

#[test]
fn filters_by_type_sender_recipient_topic_bounds_order_and_limit() {
    let (_d, bus) = open();
    mission(&bus);
    let cp = checkpoint(&bus, "ada", 0);
    for n in 0..10 {
        bus.publish("m", "ada", &format!("build/{n}"), json!(n).into())
            .unwrap();
        bus.publish("m", "bob", "chat", json!(n).into()).unwrap();
    }
    bus.handoff("m", "ada", "cy", cp.id, "").unwrap();
    let read = |f: EventFilter| bus.read_events("m", Some("audrey"), &f, None).unwrap();

    let f = EventFilter {
        types: vec![EventType::Message],
        sender: Some("ada".into()),
        topic_prefix: Some("build/".into()),
        ..EventFilter::default()
    };
    let page = read(f.clone());
    assert_eq!(page.events.len(), 10);
    assert!(page.events.iter().all(|e| e.sender == "ada"));
    let last3 = read(EventFilter {
        newest_first: true,
        limit: Some(3),
        ..f.clone()
    });
    let seqs: Vec<_> = last3.events.iter().map(|e| e.sequence).collect();
    let all: Vec<_> = page
        .events
        .iter()
        .map(|e| e.sequence)
        .rev()
        .take(3)
        .collect();
    assert_eq!(seqs, all);
    let bounded = read(EventFilter {
        from: Some(page.events[2].sequence),
        to: Some(page.events[4].sequence),
        ..f
    });
    assert_eq!(bounded.events.len(), 3);
    let to_cy = read(EventFilter {
        recipient: Some("cy".into()),
        ..EventFilter::default()
    });
    assert_eq!(to_cy.events.len(), 1);
    assert_eq!(to_cy.events[0].event_type(), EventType::Handoff);
    let several = read(EventFilter {
        types: vec![EventType::Checkpoint, EventType::Handoff],
        ..EventFilter::default()
    });
    assert_eq!(several.events.len(), 2);
    // Paging forward with `next`.
    let p1 = read(EventFilter {
        limit: Some(4),
        ..EventFilter::default()
    });
    let p2 = read(EventFilter {
        limit: Some(4),
        from: p1.next,
        ..EventFilter::default()
    });
    assert_eq!(p2.events[0].sequence, p1.events[3].sequence + 1);
    let e = bus
        .read_events(
            "m",
            Some("audrey"),
            &EventFilter {
                limit: Some(0),
                ..EventFilter::default()
            },
            None,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

/// Every test above, again on PostgreSQL (skipped, saying so, without it).
#[test]
fn postgres_half() {
    util::postgres_half();
}
