//! The public write calls. Stateless checks run here, on the caller's
//! thread; everything else happens on the writer.

use super::Reply;
use super::{
    at_sequence, check_body, check_event_id, check_identifier, check_meta, check_name,
    check_participant_name, check_text, Action, AppendOptions, Cached, MissionBus, NewMission,
    MAX_TEXT_BYTES,
};
use std::sync::mpsc::{self};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::codec::Anchor;
use crate::error::{Error, Result};
use crate::event::{Event, EventBody, EventMeta, Json, OPERATOR};
use crate::verify::VerifyReport;

/// An event to append: built by the public methods, validated by the writer.
#[derive(Debug, Clone)]
pub(super) struct Draft {
    pub(super) id: Option<Uuid>,
    pub(super) timestamp: Option<DateTime<Utc>>,
    pub(super) sender: String,
    pub(super) body: EventBody,
    pub(super) meta: EventMeta,
}

pub(super) enum Job {
    Append {
        mission: String,
        drafts: Vec<Draft>,
        expected: Option<u64>,
        reply: Reply<Vec<Event>>,
    },
    Import {
        mission: String,
        anchor: Option<Box<Anchor>>,
        events: Vec<Event>,
        progress: Box<dyn FnMut(u64) + Send>,
        reply: mpsc::Sender<Result<u64>>,
    },
    Load {
        mission: String,
        reply: mpsc::Sender<Result<Arc<Cached>>>,
    },
    Verify {
        mission: String,
        reply: mpsc::Sender<Result<VerifyReport>>,
    },
    Backup {
        to: std::path::PathBuf,
        reply: mpsc::Sender<Result<super::BackupReport>>,
    },
    AcceptLoss {
        mission: String,
        reply: mpsc::Sender<Result<Option<Event>>>,
    },
    History(super::history::HistoryJob),
}

impl MissionBus {
    /// Create a mission (and register its lead, if given) atomically.
    /// Returns the stored events: `mission_created`, then `participant_joined`.
    pub fn create_mission(&self, m: NewMission) -> Result<Vec<Event>> {
        check_identifier("mission id", &m.mission_id)?;
        check_text("title", &m.title, MAX_TEXT_BYTES)?;
        let sender = m.lead.clone().unwrap_or_else(|| OPERATOR.to_string());
        let mut drafts = vec![Draft {
            id: None,
            timestamp: None,
            sender: sender.clone(),
            meta: EventMeta::default(),
            body: EventBody::MissionCreated {
                mission_id: m.mission_id.clone(),
                title: m.title,
                config: m.config,
            },
        }];
        if let Some(lead) = m.lead {
            check_identifier("lead", &lead)?;
            drafts.push(Draft {
                id: None,
                timestamp: None,
                sender,
                meta: EventMeta::default(),
                body: EventBody::ParticipantJoined {
                    name: lead,
                    role: "lead".into(),
                    metadata: Json::empty_object(),
                },
            });
        }
        self.send(|reply| Job::Append {
            mission: m.mission_id,
            drafts,
            expected: None,
            reply: Reply::Blocking(reply),
        })
    }

    /// Append one event: `sender` does `action` in `mission`, checked against
    /// the sender's role. Returns the stored, durable event.
    pub fn append(
        &self,
        mission: &str,
        sender: &str,
        action: Action,
        opts: &AppendOptions,
    ) -> Result<Event> {
        let mut draft = self.draft(sender, action, opts.event_id, None)?;
        draft.meta = check_meta(opts.meta.clone())?;
        let mut events = self.send(|reply| Job::Append {
            mission: mission.to_string(),
            drafts: vec![draft],
            expected: opts.expected_sequence,
            reply: Reply::Blocking(reply),
        })?;
        events.pop().ok_or(Error::Closed)
    }

    /// Append several events to one mission atomically (all or none), with
    /// one flush. Each item is checked as if the earlier ones had landed.
    pub fn append_batch(
        &self,
        mission: &str,
        items: Vec<(String, Action)>,
        expected_sequence: Option<u64>,
    ) -> Result<Vec<Event>> {
        let items = items
            .into_iter()
            .map(|(sender, action)| (sender, action, EventMeta::default()))
            .collect();
        self.append_batch_with_meta(mission, items, expected_sequence)
    }

    /// [`MissionBus::append_batch`] with per-event metadata (correlation,
    /// causation, attributes) on each item.
    pub fn append_batch_with_meta(
        &self,
        mission: &str,
        items: Vec<(String, Action, EventMeta)>,
        expected_sequence: Option<u64>,
    ) -> Result<Vec<Event>> {
        if items.is_empty() {
            return Err(Error::invalid("batch", "is empty"));
        }
        let drafts = items
            .into_iter()
            .map(|(sender, action, meta)| {
                let mut d = self.draft(&sender, action, None, None)?;
                d.meta = check_meta(meta)?;
                Ok(d)
            })
            .collect::<Result<Vec<_>>>()?;
        self.send(|reply| Job::Append {
            mission: mission.to_string(),
            drafts,
            expected: expected_sequence,
            reply: Reply::Blocking(reply),
        })
    }

    /// Register `name` with `role` (by the operator, as the prototype's
    /// `register_participant`).
    pub fn join(&self, mission: &str, name: &str, role: &str, metadata: Json) -> Result<Event> {
        self.append(
            mission,
            OPERATOR,
            Action::Join {
                name: name.into(),
                role: role.into(),
                metadata,
            },
            &AppendOptions::default(),
        )
    }

    /// Publish a message (capability `publish`).
    pub fn publish(
        &self,
        mission: &str,
        sender: &str,
        topic: &str,
        payload: Json,
    ) -> Result<Event> {
        self.append(
            mission,
            sender,
            Action::Publish {
                topic: topic.into(),
                payload,
            },
            &AppendOptions::default(),
        )
    }

    /// Save a checkpoint (capability `checkpoint`).
    pub fn create_checkpoint(
        &self,
        mission: &str,
        sender: &str,
        summary: &str,
        state: Json,
        artifacts: Vec<String>,
    ) -> Result<Event> {
        self.append(
            mission,
            sender,
            Action::Checkpoint {
                summary: summary.into(),
                state,
                artifacts,
            },
            &AppendOptions::default(),
        )
    }

    /// Hand work to `recipient`, pointing at a checkpoint of this mission
    /// (capability `handoff`).
    pub fn handoff(
        &self,
        mission: &str,
        sender: &str,
        recipient: &str,
        checkpoint_id: Uuid,
        note: &str,
    ) -> Result<Event> {
        self.append(
            mission,
            sender,
            Action::Handoff {
                recipient: recipient.into(),
                checkpoint_id,
                note: note.into(),
            },
            &AppendOptions::default(),
        )
    }

    /// Stateless checks (names, sizes) on the caller's thread, before the
    /// writer sees the request.
    pub(super) fn draft(
        &self,
        sender: &str,
        action: Action,
        id: Option<Uuid>,
        timestamp: Option<DateTime<Utc>>,
    ) -> Result<Draft> {
        if sender != OPERATOR {
            check_participant_name("sender", sender)?;
        }
        if let Some(id) = &id {
            check_event_id(id)?;
        }
        let body = match action {
            Action::Join {
                name,
                role,
                metadata,
            } => {
                check_identifier("participant name", &name)?;
                check_name("role", &role)?;
                EventBody::ParticipantJoined {
                    name,
                    role,
                    metadata,
                }
            }
            Action::ChangeRole { name, role } => {
                check_participant_name("participant name", &name)?;
                check_name("role", &role)?;
                EventBody::RoleChanged { name, role }
            }
            Action::Publish { topic, payload } => EventBody::Message { topic, payload },
            Action::Checkpoint {
                summary,
                state,
                artifacts,
            } => EventBody::Checkpoint {
                summary,
                state,
                artifacts,
            },
            Action::Handoff {
                recipient,
                checkpoint_id,
                note,
            } => {
                check_participant_name("recipient", &recipient)?;
                EventBody::Handoff {
                    recipient,
                    checkpoint_id,
                    note,
                }
            }
            Action::Accept {
                handoff_id,
                lease_ms,
            } => EventBody::HandoffAccepted {
                handoff_id,
                lease_ms,
            },
            Action::Heartbeat {
                handoff_id,
                lease_ms,
            } => EventBody::HandoffHeartbeat {
                handoff_id,
                lease_ms,
            },
            Action::Complete { handoff_id, note } => {
                EventBody::HandoffCompleted { handoff_id, note }
            }
            Action::Decline { handoff_id, note } => EventBody::HandoffDeclined { handoff_id, note },
            Action::Release { handoff_id, note } => EventBody::HandoffReleased { handoff_id, note },
            Action::Remove { name } => {
                check_participant_name("participant name", &name)?;
                EventBody::ParticipantRemoved { name }
            }
            Action::StartCell {
                profile,
                mechanism,
                workspace,
                command,
            } => EventBody::CellStarted {
                profile,
                mechanism,
                workspace,
                command,
            },
            Action::EndCell {
                cell_id,
                exit_code,
                signal,
                duration_ms,
                error,
            } => EventBody::CellExited {
                cell_id,
                exit_code,
                signal,
                duration_ms,
                error,
            },
        };
        check_body(&body, self.inner.limits)?;
        Ok(Draft {
            id,
            timestamp,
            sender: sender.to_string(),
            body,
            meta: EventMeta::default(),
        })
    }

    /// Import a whole mission log (as exported): sequences 1..=n, the first
    /// a `mission_created`. Event ids, timestamps and payloads are kept.
    /// Every event is validated as if appended live (roles, references)
    /// before anything is written; the mission becomes visible atomically
    /// when the last chunk is durable. Refuses an existing mission id.
    /// `progress` is called with the number of events written so far.
    pub fn import_log(
        &self,
        events: Vec<Event>,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<u64> {
        let Some(first) = events.first() else {
            return Err(Error::invalid("import", "the log is empty"));
        };
        let (EventBody::MissionCreated {
            mission_id, title, ..
        }
        | EventBody::MissionForked {
            mission_id, title, ..
        }) = &first.body
        else {
            return Err(Error::invalid(
                "import",
                format!(
                    "the first event (sequence {}) is a {}, not mission_created or mission_forked",
                    first.sequence,
                    first.event_type()
                ),
            ));
        };
        check_identifier("mission id", mission_id)?;
        check_text("title", title, MAX_TEXT_BYTES)?;
        let mission = mission_id.clone();
        self.check_import_events(&events, 1)?;
        self.send(|reply| Job::Import {
            mission,
            anchor: None,
            events,
            progress: Box::new(progress),
            reply,
        })
    }

    /// [`MissionBus::import_log`] of a pruned mission (copy): its events
    /// from the anchor's first kept sequence on, validated from the
    /// anchor's state and chained on its hash; the anchor is written with
    /// them, atomically.
    pub(super) fn import_pruned(
        &self,
        mission: &str,
        anchor: Anchor,
        events: Vec<Event>,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<u64> {
        check_identifier("mission id", mission)?;
        if events.is_empty() {
            return Err(Error::invalid("import", "the log is empty"));
        }
        self.check_import_events(&events, anchor.before)?;
        self.send(|reply| Job::Import {
            mission: mission.to_string(),
            anchor: Some(Box::new(anchor)),
            events,
            progress: Box::new(progress),
            reply,
        })
    }

    /// Stateless checks of an imported log whose first sequence is `first`.
    fn check_import_events(&self, events: &[Event], first: u64) -> Result<()> {
        for (i, e) in events.iter().enumerate() {
            if e.sequence != first + i as u64 {
                return Err(Error::invalid(
                    "import",
                    format!(
                        "event #{} has sequence {}; sequences must run {first}, {}, ... \
                         without gaps",
                        i + 1,
                        e.sequence,
                        first + 1
                    ),
                ));
            }
            check_event_id(&e.id).map_err(|err| at_sequence(err, e.sequence))?;
            if e.sender != OPERATOR {
                check_participant_name("sender", &e.sender)
                    .map_err(|err| at_sequence(err, e.sequence))?;
            }
            check_body(&e.body, self.inner.limits).map_err(|err| at_sequence(err, e.sequence))?;
            check_meta(e.meta.clone()).map_err(|err| at_sequence(err, e.sequence))?;
        }
        Ok(())
    }
}
