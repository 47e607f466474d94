//! Filtered reads: by event type, sender, recipient, topic prefix and
//! metadata (correlation id, causation id, one attribute),
//! bounded by `from`/`to`, oldest or newest first, at most `limit`, and
//! optionally starting after a consumer's acknowledged position. The filter
//! runs in the store's scan (`Store::scan_filtered`), so only matching
//! events leave it.

use super::{require, MissionBus};
use crate::error::{Error, Result};
use crate::event::{Event, EventBody, EventType};
use crate::profiles::Capability;

/// Most events one filtered read returns.
pub const MAX_READ_LIMIT: usize = 10_000;

/// Which events a read returns. The default matches everything, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only these event types (any when empty).
    pub types: Vec<EventType>,
    /// Only events by this sender.
    pub sender: Option<String>,
    /// Only events with this `recipient` (handoffs).
    pub recipient: Option<String>,
    /// Only messages whose topic starts with this.
    pub topic_prefix: Option<String>,
    /// Only events with this correlation id.
    pub correlation_id: Option<String>,
    /// Only events with this causation id.
    pub causation_id: Option<String>,
    /// Only events holding this attribute (key, value).
    pub attribute: Option<(String, String)>,
    /// First sequence (default 1).
    pub from: Option<u64>,
    /// Last sequence (default: the head).
    pub to: Option<u64>,
    /// Newest first instead of oldest first (with `limit`: the last N).
    pub newest_first: bool,
    /// At most this many events (default and most: 10,000).
    pub limit: Option<usize>,
}

impl EventFilter {
    /// Whether `e` passes the type, sender, recipient and topic tests (the
    /// sequence bounds are applied by the scan).
    pub fn matches(&self, e: &Event) -> bool {
        if !self.types.is_empty() && !self.types.contains(&e.event_type()) {
            return false;
        }
        if self.sender.as_ref().is_some_and(|s| *s != e.sender) {
            return false;
        }
        if let Some(r) = &self.recipient {
            match &e.body {
                EventBody::Handoff { recipient, .. } if recipient == r => {}
                _ => return false,
            }
        }
        if self
            .correlation_id
            .as_ref()
            .is_some_and(|c| e.meta.correlation_id.as_ref() != Some(c))
        {
            return false;
        }
        if self
            .causation_id
            .as_ref()
            .is_some_and(|c| e.meta.causation_id.as_ref() != Some(c))
        {
            return false;
        }
        if let Some((k, v)) = &self.attribute {
            if e.meta.attributes.get(k) != Some(v) {
                return false;
            }
        }
        if let Some(p) = &self.topic_prefix {
            match &e.body {
                EventBody::Message { topic, .. } if topic.starts_with(p.as_str()) => {}
                _ => return false,
            }
        }
        true
    }

    /// Whether a sequence is inside `from..=to`.
    pub fn in_bounds(&self, sequence: u64) -> bool {
        sequence >= self.from.unwrap_or(1) && self.to.is_none_or(|t| sequence <= t)
    }
}

/// One page of a filtered read.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// The matching events, in the order asked for.
    pub events: Vec<Event>,
    /// Where the next page starts: for oldest first the `from` to pass next,
    /// for newest first the `to` to pass next (`None` when the scan reached
    /// the end of the range).
    pub next: Option<u64>,
    /// The mission's head when the page was read.
    pub head_sequence: u64,
}

impl MissionBus {
    /// A filtered read of `mission` by `reader` (capability `read`; `None`
    /// is the operator). With `consumer`, the read starts after the
    /// position that consumer of `reader` acknowledged (see
    /// [`MissionBus::ack`]). Records are checked as they are scanned:
    /// oldest first like [`MissionBus::replay`] (checksums and the hash
    /// chain), newest first by checksum and contiguity.
    pub fn read_events(
        &self,
        mission: &str,
        reader: Option<&str>,
        filter: &EventFilter,
        consumer: Option<&str>,
    ) -> Result<EventPage> {
        let c = self.cached(mission)?;
        if let Some(r) = reader {
            require(&c.state, r, Capability::Read)?;
        }
        let limit = filter.limit.unwrap_or(MAX_READ_LIMIT);
        if limit == 0 || limit > MAX_READ_LIMIT {
            return Err(Error::invalid(
                "limit",
                format!("must be 1..={MAX_READ_LIMIT}, got {limit}"),
            ));
        }
        let mut from = filter.from.unwrap_or(1).max(c.state.first_sequence());
        if let Some(name) = consumer {
            let Some(r) = reader else {
                return Err(Error::invalid(
                    "consumer",
                    "consumers belong to participants; read as one",
                ));
            };
            from = from.max(self.consumer_position(mission, r, name)? + 1);
        }
        let head = c.state.head;
        let to = filter.to.unwrap_or(head).min(head);
        let keep = |e: &Event| filter.matches(e);
        let (events, last) = if filter.newest_first {
            // Newest first: checksums and contiguity (the hash chain runs
            // forward only).
            self.inner
                .store()
                .scan_filtered(c.no, mission, (from, to), true, limit, &keep)?
        } else {
            // Oldest first: the chain-checked scan of `replay`, filtered here
            // as records come out of the store.
            let mut out = Vec::new();
            let mut last = None;
            if from <= to {
                let iter =
                    self.inner
                        .store()
                        .read_chained(c.no, mission, from, to, (head, c.hash))?;
                for e in iter {
                    let e = e?;
                    last = Some(e.sequence);
                    if keep(&e) {
                        out.push(e);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
            (out, last)
        };
        let next = match last {
            None => None,
            Some(l) if filter.newest_first => (l > from).then(|| l - 1),
            Some(l) => (l < to).then_some(l + 1),
        };
        Ok(EventPage {
            events,
            next,
            head_sequence: head,
        })
    }
}
