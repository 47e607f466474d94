//! Flag definitions (clap derive). Names and shapes are a contract: scripts
//! and other tools depend on them, so change them only with the docs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `mission-bus`: a durable, append-only log for multi-agent missions.
#[derive(Debug, Parser)]
#[command(
    name = "mission-bus",
    version,
    about = "A durable, append-only, event-sourced log for multi-agent missions",
    long_about = "A durable, append-only, event-sourced log for multi-agent missions.\n\n\
        Agents publish messages, save checkpoints and hand work to each other; auditors \
        replay and verify the history. Every write prints the stored event as one JSON \
        object on stdout.\n\n\
        Exit codes: 0 ok, 2 usage, 3 permission denied, 4 not found, 5 conflict, \
        6 integrity failure, 1 anything else.\n\n\
        Try `mission-bus demo` first.",
    propagate_version = true
)]
pub(crate) struct Cli {
    /// Data directory (created on first use). One process at a time may open it.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "MISSION_BUS_DATA",
        default_value = "mission-bus-data"
    )]
    pub data: PathBuf,

    /// Where the store lives: a path or sled:PATH (a sled data directory,
    /// like --data), or postgres://USER@HOST[,HOST2]/DB?... for PostgreSQL
    /// (several processes and machines may use one database).
    #[arg(long, global = true, value_name = "URL", env = "MISSION_BUS_STORE")]
    pub store: Option<String>,

    /// Run the command against the `mission-bus serve` at URL
    /// (http://HOST:PORT) instead of opening the data directory.
    #[arg(long, global = true, value_name = "URL", env = "MISSION_BUS_URL")]
    pub server: Option<String>,

    /// Bearer token for --server: the admin token acts as the operator (as
    /// the CLI does on the files), so `--as NAME` is checked against NAME's
    /// role; a participant's token acts as that participant (`--as` must
    /// name it).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "MISSION_BUS_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a mission; the lead is registered as its first participant.
    Create {
        /// Mission id, e.g. mission-883.
        mission: String,
        /// Human-readable title.
        #[arg(long)]
        title: String,
        /// Name of the lead (role `lead`).
        #[arg(long, value_name = "NAME")]
        lead: String,
        /// Roles and isolation profiles config (JSON); defaults when omitted.
        #[arg(long, value_name = "FILE")]
        profiles: Option<PathBuf>,
    },
    /// Register a participant with a role.
    Join {
        /// Mission id.
        mission: String,
        /// Participant name.
        name: String,
        /// Role, as defined in the mission's config (lead, write, read, audit by default).
        #[arg(long)]
        role: String,
        /// Free-form JSON metadata.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        metadata: String,
    },
    /// Publish a message (capability `publish`).
    Publish {
        /// Mission id.
        mission: String,
        #[command(flatten)]
        actor: Actor,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Payload (any JSON value).
        #[arg(long, value_name = "JSON")]
        payload: String,
        #[command(flatten)]
        guard: Guard,
    },
    /// Save a checkpoint (capability `checkpoint`).
    Checkpoint {
        /// Mission id.
        mission: String,
        #[command(flatten)]
        actor: Actor,
        /// What the checkpoint captures.
        #[arg(long, value_name = "TEXT")]
        summary: String,
        /// State to resume from (any JSON value).
        #[arg(long, value_name = "JSON")]
        state: String,
        /// Artifact path; repeat for several.
        #[arg(long = "artifact", value_name = "PATH")]
        artifacts: Vec<String>,
        #[command(flatten)]
        guard: Guard,
    },
    /// Hand work to a participant, pointing at a checkpoint (capability `handoff`).
    Handoff {
        /// Mission id.
        mission: String,
        #[command(flatten)]
        actor: Actor,
        /// Recipient.
        #[arg(long, value_name = "NAME")]
        to: String,
        /// Checkpoint id (a `checkpoint_id` printed by `checkpoint`).
        #[arg(long, value_name = "ID")]
        checkpoint: String,
        /// Note for the recipient.
        #[arg(long, value_name = "TEXT", default_value = "")]
        note: String,
        #[command(flatten)]
        guard: Guard,
    },
    /// Print the resume packet of a handoff (JSON, the prototype's fields).
    #[command(group = clap::ArgGroup::new("which").required(true).multiple(false))]
    Resume {
        /// Mission id.
        mission: String,
        /// A handoff id.
        #[arg(long, value_name = "ID", group = "which")]
        handoff: Option<String>,
        /// The latest handoff addressed to this participant.
        #[arg(long = "for", value_name = "NAME", group = "which")]
        recipient: Option<String>,
    },
    /// Print a mission's events as JSON Lines, in order (capability `read`).
    Replay {
        /// Mission id.
        mission: String,
        /// The reading participant (needs `read`).
        #[arg(long = "as", value_name = "NAME")]
        reader: String,
        /// First sequence to print.
        #[arg(long, value_name = "SEQ", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..))]
        from: u64,
        /// Last sequence to print (default: the head).
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
        /// Only events of this type; repeat for several (message, checkpoint,
        /// handoff, mission_created, participant_joined, role_changed,
        /// handoff_accepted, handoff_heartbeat, handoff_completed,
        /// handoff_declined, handoff_released, handoff_expired,
        /// participant_removed, cell_started, cell_exited).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Export a mission as a seed document (default) or JSON Lines.
    Export {
        /// Mission id.
        mission: String,
        /// `seed`: the prototype's whole-mission document; `jsonl`: every event, lossless.
        #[arg(long, value_enum, default_value_t = Format::Seed)]
        format: Format,
    },
    /// Import a mission from a seed document or JSON Lines (`-` reads stdin).
    Import {
        /// The file to read, or `-` for stdin.
        file: PathBuf,
        /// Format of the input; detected from its content when omitted.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// List missions with their event counts and head sequence (JSON Lines).
    Missions,
    /// Verify a mission's checksums, hash chain and indexes (all missions if none given).
    Verify {
        /// Mission id; every mission when omitted.
        mission: Option<String>,
    },
    /// Accept, on the record, that acknowledged events of a mission are lost
    /// (as `verify` reports them), so that writes to it resume. Writes a
    /// `loss_accepted` event into the mission's log and an entry into the
    /// commit ledger. Try `mission-bus salvage` first.
    AcceptLoss {
        /// Mission id.
        mission: String,
        /// Confirm: the lost events will not come back through this store.
        #[arg(long)]
        yes: bool,
    },
    /// Run the HTTP/JSON bus server on the data directory.
    Serve {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7411")]
        listen: SocketAddr,
        /// Where the admin token is read from or written to (default DATA/admin.token).
        #[arg(long, value_name = "FILE")]
        admin_token_file: Option<PathBuf>,
        /// Log filter on stderr: a level (error, warn, info, debug, trace) or
        /// a `tracing` filter such as `mission_bus=debug,warn`.
        #[arg(long, value_name = "FILTER", default_value = "info")]
        log_level: String,
        /// Log line format on stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormatArg,
    },
    /// Tell a mission's story end to end on the data directory.
    Demo,
    /// Serve the Model Context Protocol on stdio: tools to publish,
    /// checkpoint, hand off, accept (and the other lifecycle steps), list
    /// handoffs and checkpoints, resume, read and verify, against --server
    /// (token from MISSION_BUS_TOKEN) or the data directory. Set
    /// MISSION_BUS_MCP_LOG (a log filter such as `debug`) to log to stderr.
    Mcp,
    /// Copy the whole store, consistently, into a new directory that opens
    /// as a store (run while no server holds the data directory; a running
    /// server has POST /v1/admin/backup).
    Backup {
        /// Where the copy goes: must not exist or be empty.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Copy a whole store into another, across backends (sled to
    /// PostgreSQL and back): every mission keeps its ids, timestamps and
    /// head hash; progress on stderr, both sides verified at the end.
    /// Tokens and consumer positions are not copied.
    Copy {
        /// The store to read: a path, sled:PATH or postgres://...
        #[arg(long, value_name = "URL")]
        from: String,
        /// The store to fill (it must hold none of the missions).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Recover every intact event of a damaged store into a new store,
    /// reading the raw files (never through sled). Exit 0 when everything
    /// came back and matches the ledger, 6 when anything was lost (the
    /// report on stdout says what), 4 when DAMAGED_DIR holds no store.
    /// DAMAGED_DIR is never written.
    Salvage {
        /// The damaged data directory.
        damaged: PathBuf,
        /// Where the recovered store goes: must not exist or be empty.
        #[arg(long, value_name = "NEW_DIR")]
        to: PathBuf,
    },
    /// Accept a handoff addressed to you; you hold a lease until it lapses.
    Accept(Step),
    /// Extend the lease of a handoff you hold.
    Heartbeat(Step),
    /// Finish a handoff you hold.
    Complete(Step),
    /// Refuse a handoff offered to you; the work returns to its sender.
    Decline(Step),
    /// Give back a handoff you hold; the work returns to its sender.
    Release(Step),
    /// Expire every lease that lapsed by --at (default now): the work returns.
    Expire {
        /// Mission id; every mission when omitted.
        mission: Option<String>,
        /// Judge deadlines against this time (RFC 3339) instead of the clock.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// List handoffs with their lifecycle status (JSON Lines), open first.
    Handoffs {
        /// Mission id.
        mission: String,
        /// Only those addressed to this participant.
        #[arg(long = "for", value_name = "NAME")]
        recipient: Option<String>,
    },
    /// List checkpoints newest first (JSON Lines), or show one.
    Checkpoints {
        /// Mission id.
        mission: String,
        /// Only checkpoints made by this participant.
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Only checkpoints with a sequence below this (paging).
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// Show the checkpoint with this id.
        #[arg(long, value_name = "ID", conflicts_with_all = ["before", "latest"])]
        id: Option<String>,
        /// Show only the latest (of --by when given).
        #[arg(long)]
        latest: bool,
    },
    /// Change a participant's role (as the operator, or --as a lead).
    Role {
        /// Mission id.
        mission: String,
        /// Participant name.
        name: String,
        /// The new role.
        #[arg(long)]
        role: String,
        /// The acting lead (default: the operator).
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
    },
    /// Remove a participant (as the operator, or --as a lead); its tokens stop working.
    Remove {
        /// Mission id.
        mission: String,
        /// Participant name.
        name: String,
        /// The acting lead (default: the operator).
        #[arg(long = "as", value_name = "NAME")]
        by: Option<String>,
    },
    /// Issue a participant token for the HTTP server (printed once).
    Token {
        /// Mission id.
        mission: String,
        /// Participant name.
        name: String,
        /// Revoke the participant's earlier tokens in the same write.
        #[arg(long)]
        rotate: bool,
    },
    /// Isolation cells: run an agent's command under one of the mission's
    /// isolation profiles (see docs/cells.md).
    Cell {
        #[command(subcommand)]
        command: super::cell::CellCommand,
    },
    /// Acknowledge events up to SEQ for a named consumer of yours.
    Ack {
        /// Mission id.
        mission: String,
        #[command(flatten)]
        actor: Actor,
        /// Consumer name.
        #[arg(long, value_name = "NAME")]
        consumer: String,
        /// The last sequence processed.
        sequence: u64,
    },
    /// Create mission NEW_ID from a checkpoint of SOURCE: its participants
    /// as they were at that point, the checkpoint copied, the parent's
    /// sequence and chain hash recorded in its first event.
    Fork {
        /// The parent mission.
        source: String,
        /// The checkpoint to fork from (a checkpoint_id of SOURCE).
        #[arg(long = "at", value_name = "CHECKPOINT_ID")]
        at: String,
        /// The new mission's id.
        #[arg(long = "as", value_name = "NEW_ID")]
        new_id: String,
    },
    /// Delete a mission, leaving a tombstone (id, head sequence and hash,
    /// when, by whom). Its events are gone for good: archive it first.
    Delete {
        /// Mission id.
        mission: String,
        /// Confirm.
        #[arg(long)]
        yes: bool,
        /// Who deletes it, for the record.
        #[arg(long, value_name = "NAME", default_value = "@operator")]
        by: String,
    },
    /// Prune a mission's events before sequence SEQ, keeping an anchor
    /// (the chain hash there) so that verify proves what remains.
    Prune {
        /// Mission id.
        mission: String,
        /// The first sequence to keep.
        #[arg(long, value_name = "SEQ")]
        before: u64,
        /// Write the pruned events to this archive file first.
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
    },
    /// Set a mission's retention policy (0 = no limit).
    Retention {
        /// Mission id.
        mission: String,
        /// Prune events older than this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        max_age: u64,
        /// Keep at most this many of the newest events.
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_count: u64,
    },
    /// Apply every mission's retention policy now (the server does this on a timer).
    ApplyRetention,
    /// List tombstones of deleted missions (JSON Lines).
    Tombstones {
        /// Only this mission id's.
        mission: Option<String>,
    },
    /// Write a mission (or its events before --before) to an archive file
    /// that carries its head hash and verifies on its own.
    Archive {
        /// Mission id.
        mission: String,
        /// The archive file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Only the events before this sequence (the prefix a prune removes).
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
    },
    /// Verify archive files on their own: checksums, the hash chain, the
    /// head hash each carries, and the links between consecutive files.
    VerifyArchive {
        /// Archive files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Restore a mission from archive files (oldest first, starting at
    /// sequence 1) into the store; its head hash is checked against the
    /// archive's.
    Restore {
        /// Archive files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Rewrite the store into a compact copy and swap it in, giving back
    /// the space of deleted and pruned events (run while no server holds
    /// the data directory; on PostgreSQL: VACUUM FULL of the store's
    /// tables). Prints bytes on disk before and after.
    Compact,
    /// List consumer positions (JSON Lines): everyone's, or --as one participant's.
    Consumers {
        /// Mission id.
        mission: String,
        /// Only this participant's.
        #[arg(long = "as", value_name = "NAME")]
        participant: Option<String>,
    },
}

/// A handoff lifecycle step by the participant it is addressed to.
#[derive(Debug, Args)]
pub(crate) struct Step {
    /// Mission id.
    pub mission: String,
    #[command(flatten)]
    pub actor: Actor,
    /// The handoff id.
    #[arg(long, value_name = "ID")]
    pub handoff: String,
    /// Lease length in milliseconds (accept, heartbeat).
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub lease_ms: u64,
    /// Note (complete, decline, release).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub note: String,
}

/// Filters of `replay`, the same as the HTTP query parameters.
#[derive(Debug, Args, Default)]
pub(crate) struct FilterArgs {
    /// Only events by this sender.
    #[arg(long, value_name = "NAME")]
    pub sender: Option<String>,
    /// Only handoffs to this recipient.
    #[arg(long, value_name = "NAME")]
    pub recipient: Option<String>,
    /// Only messages whose topic starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// Only events with this correlation id.
    #[arg(long = "correlation", value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Only events with this causation id.
    #[arg(long = "causation", value_name = "ID")]
    pub causation_id: Option<String>,
    /// Only events holding this attribute.
    #[arg(long = "with-attr", value_name = "KEY=VALUE")]
    pub attribute: Option<String>,
    /// `asc` (default) or `desc` (newest first).
    #[arg(long, value_name = "ORDER", value_parser = ["asc", "desc"])]
    pub order: Option<String>,
    /// At most this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Start after what this consumer of the reader acknowledged.
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
}

impl FilterArgs {
    /// Whether any filter beyond `--from`/`--to`/`--type` was given.
    pub(crate) fn any(&self) -> bool {
        self.sender.is_some()
            || self.recipient.is_some()
            || self.topic_prefix.is_some()
            || self.correlation_id.is_some()
            || self.causation_id.is_some()
            || self.attribute.is_some()
            || self.order.is_some()
            || self.limit.is_some()
            || self.consumer.is_some()
    }
}

/// Who acts.
#[derive(Debug, Args)]
pub(crate) struct Actor {
    /// The acting participant.
    #[arg(long = "as", value_name = "NAME")]
    pub name: String,
}

/// Optional guards on a write (safe retries, optimistic concurrency).
#[derive(Debug, Args)]
pub(crate) struct Guard {
    /// Fail with exit 5, writing nothing, unless the mission's head sequence is N.
    #[arg(long, value_name = "N")]
    pub expect_seq: Option<u64>,
    /// Caller-chosen event id: retrying with the same id and content returns
    /// the stored event instead of writing twice.
    #[arg(long, value_name = "UUID")]
    pub event_id: Option<String>,
    /// Correlation id stored with the event (groups events of one request).
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Causation id stored with the event (what caused it, e.g. an event id).
    #[arg(long, value_name = "ID")]
    pub causation_id: Option<String>,
    /// An attribute stored with the event (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attributes: Vec<String>,
}

/// Log line formats of `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Document formats of export and import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// The prototype's whole-mission JSON document.
    Seed,
    /// Every event, one JSON object per line (lossless).
    Jsonl,
}
