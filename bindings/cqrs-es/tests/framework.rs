//! cqrs-es's framework end to end on factlog: the bank account through
//! `CqrsFramework` with an event store and a snapshot store across reopens,
//! a view, races, stale snapshot numbers, a lost snapshot copy, and the same
//! scenario on cqrs-es's in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::bank::{BalanceQuery, BankAccount, BankCommand, BankEvent};
use cqrs_es::mem_store::MemStore;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, PersistenceError, SerializedEvent};
use cqrs_es::{AggregateError, CqrsFramework, EventEnvelope, EventStore};
use factlog::{Options, Store};
use factlog_cqrs::{factlog_aggregate_cqrs, factlog_cqrs, factlog_snapshot_cqrs, FactlogEventRepository};
use serde_json::json;

type Outcome = Result<(), String>;

/// The commands of the scenario: three accounts, overdrafts the rules refuse,
/// commands of several events, 60 commands in all.
fn scenario() -> Vec<(String, BankCommand)> {
    let mut cmds = Vec::new();
    for (i, owner) in ["ada", "bo", "ünïcödé ✓"].iter().enumerate() {
        cmds.push((format!("acct-{i}"), BankCommand::Open { owner: owner.to_string() }));
    }
    for round in 0..19i64 {
        let id = format!("acct-{}", round % 3);
        let cmd = match round % 5 {
            0 => BankCommand::Deposit { amount: 100 + round },
            1 => BankCommand::Withdraw { amount: 30 },
            2 => BankCommand::Withdraw { amount: 10_000 }, // overdraft: refused
            3 => BankCommand::DepositMany { amounts: vec![1, 2, 3] },
            _ => BankCommand::Deposit { amount: 7 },
        };
        cmds.push((id.clone(), cmd));
        cmds.push((id.clone(), BankCommand::Deposit { amount: 5 }));
        cmds.push((format!("acct-{}", (round + 1) % 3), BankCommand::Withdraw { amount: 1 }));
    }
    cmds
}

async fn run<ES: EventStore<BankAccount>>(
    cqrs: &CqrsFramework<BankAccount, ES>,
    cmds: &[(String, BankCommand)],
) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (id, cmd) in cmds {
        let mut meta = HashMap::new();
        meta.insert("client".to_string(), format!("tëst/{id}"));
        let r = cqrs.execute_with_metadata(id, cmd.clone(), meta).await;
        out.push(r.map_err(|e| match e {
            AggregateError::UserError(e) => e.0,
            other => panic!("unexpected framework error: {other:?}"),
        }));
    }
    out
}

/// (aggregate id, sequence, payload, metadata) of every event of the accounts.
async fn events_of<ES: EventStore<BankAccount>>(
    store: &ES,
    ids: &[&str],
) -> Vec<(String, usize, BankEvent, HashMap<String, String>)> {
    let mut out = Vec::new();
    for id in ids {
        for e in store.load_events(id).await.unwrap() {
            out.push((e.aggregate_id, e.sequence, e.payload, e.metadata));
        }
    }
    out
}

const IDS: [&str; 3] = ["acct-0", "acct-1", "acct-2"];

fn open_repo(dir: &Path) -> FactlogEventRepository {
    FactlogEventRepository::new(Store::open(dir, Options::default()).unwrap())
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Events,
    Snapshots(usize),
    Aggregate,
}

fn framework(repo: FactlogEventRepository, mode: Mode, view: &BalanceQuery) -> factlog_cqrs::FactlogCqrs<BankAccount> {
    let queries: Vec<Box<dyn cqrs_es::Query<BankAccount>>> = vec![Box::new(view.clone())];
    match mode {
        Mode::Events => factlog_cqrs(repo, queries, ()),
        Mode::Snapshots(n) => factlog_snapshot_cqrs(repo, queries, n, ()),
        Mode::Aggregate => factlog_aggregate_cqrs(repo, queries, ()),
    }
}

/// The scenario on cqrs-es's in-memory store: the reference.
async fn reference() -> (Vec<Outcome>, Vec<(String, BalanceView)>, Vec<EventRow>) {
    let mem = MemStore::<BankAccount>::default();
    let view = BalanceQuery::default();
    let cqrs = CqrsFramework::new(mem.clone(), vec![Box::new(view.clone())], ());
    let outcomes = run(&cqrs, &scenario()).await;
    (outcomes, view.all(), events_of(&mem, &IDS).await)
}

type BalanceView = common::bank::BalanceView;
type EventRow = (String, usize, BankEvent, HashMap<String, String>);

/// The scenario in two halves with a reopen between them, in each mode: the
/// same outcomes, views and events as the in-memory store, and the account
/// state loads right after the reopen (the second half depends on it).
#[tokio::test]
async fn bank_account_through_the_framework_across_reopen_matches_the_in_memory_store() {
    let (ref_outcomes, ref_views, ref_events) = reference().await;
    assert!(ref_outcomes.iter().any(|o| o.as_ref().is_err_and(|e| e.starts_with("insufficient funds"))));
    let cmds = scenario();
    let (first, second) = cmds.split_at(cmds.len() / 2);
    for mode in [Mode::Events, Mode::Snapshots(10), Mode::Snapshots(4), Mode::Aggregate] {
        let dir = tempfile::tempdir().unwrap();
        let view = BalanceQuery::default();
        let mut outcomes = run(&framework(open_repo(dir.path()), mode, &view), first).await;
        // Everything above is dropped: the store is closed before it is opened again.
        let repo = open_repo(dir.path());
        let cqrs = framework(repo.clone(), mode, &view);
        outcomes.extend(run(&cqrs, second).await);
        assert_eq!(outcomes, ref_outcomes, "{mode:?}");
        assert_eq!(view.all(), ref_views, "{mode:?}");
        let store = PersistedEventStore::<_, BankAccount>::new_event_store(repo.clone());
        assert_eq!(events_of(&store, &IDS).await, ref_events, "{mode:?}");
        // The state as each mode loads it is the replayed state.
        for id in IDS {
            let replayed = store.load_aggregate(id).await.unwrap().aggregate;
            let loaded = match mode {
                Mode::Events => replayed.clone(),
                Mode::Snapshots(n) => {
                    let s = PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo.clone(), n);
                    s.load_aggregate(id).await.unwrap().aggregate
                }
                Mode::Aggregate => {
                    let s = PersistedEventStore::<_, BankAccount>::new_aggregate_store(repo.clone());
                    s.load_aggregate(id).await.unwrap().aggregate
                }
            };
            assert_eq!(loaded, replayed, "{mode:?} {id}");
            assert_eq!(view.view(id).unwrap().balance, replayed.balance);
        }
        let snapshot = repo.get_snapshot::<BankAccount>("acct-0").await.unwrap();
        match mode {
            Mode::Events => assert!(snapshot.is_none()),
            Mode::Snapshots(n) => {
                let s = snapshot.unwrap();
                assert_eq!(s.current_sequence % n, 0, "taken at a multiple of {n}");
                assert_eq!(s.current_snapshot, s.current_sequence / n, "one per {n} events, from 1");
            }
            Mode::Aggregate => {
                let s = snapshot.unwrap();
                let events = repo.get_events::<BankAccount>("acct-0").await.unwrap();
                assert_eq!(s.current_sequence, events.len());
            }
        }
        assert_eq!(repo.snapshot_copy_errors(), 0);
    }
}

/// Without being told the snapshot size, the repository records a commit's
/// last sequence, as postgres-es does; a command whose events cross a
/// multiple of the size then loads wrong (the in-memory store shows what is
/// right). `factlog_snapshot_cqrs` tells it, and it loads right.
#[tokio::test]
async fn a_command_crossing_a_snapshot_boundary_needs_the_snapshot_size() {
    let cmds = vec![
        ("a".to_string(), BankCommand::Open { owner: "x".into() }),
        ("a".to_string(), BankCommand::DepositMany { amounts: vec![1, 2, 4, 8] }), // sequences 2..=5 cross 4
        ("a".to_string(), BankCommand::Deposit { amount: 16 }),
    ];
    for told in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let repo = open_repo(dir.path());
        let store = match told {
            true => PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo.clone().with_snapshot_size(4), 4),
            false => PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo.clone(), 4),
        };
        let cqrs = CqrsFramework::new(store, vec![], ());
        run(&cqrs, &cmds).await;
        let loaded = PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo.clone(), 4);
        let balance = loaded.load_aggregate("a").await.unwrap().aggregate.balance;
        assert_eq!(balance == 31, told, "told the size: {told}, balance {balance}");
    }
}

/// Many clients race on one account: each command either commits or gets
/// `AggregateConflict`, and exactly the winners' deposits are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_account_one_wins_per_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open_repo(dir.path());
    let cqrs = std::sync::Arc::new(factlog_cqrs::<BankAccount>(repo.clone(), vec![], ()));
    cqrs.execute("race", BankCommand::Open { owner: "r".into() }).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let cqrs = cqrs.clone();
        // Identical commands: a second caller's identical commit is still a conflict.
        tasks.push(tokio::spawn(async move { cqrs.execute("race", BankCommand::Deposit { amount: 10 }).await }));
    }
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(AggregateError::AggregateConflict) => lost += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(won + lost, 16);
    assert!(won >= 1);
    let events = repo.get_events::<BankAccount>("race").await.unwrap();
    assert_eq!(events.len(), 1 + won, "every winner stored, no loser");
    let store = PersistedEventStore::<_, BankAccount>::new_event_store(repo);
    assert_eq!(store.load_aggregate("race").await.unwrap().aggregate.balance, 10 * won as i64);
}

/// Two commits loaded from the same state: exactly one is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_commits_from_one_loaded_state_exactly_one_wins() {
    for identical in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let repo = open_repo(dir.path());
        let store = PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo.clone(), 2);
        let ctx = || store.load_aggregate("acct");
        let opened = vec![BankEvent::AccountOpened { owner: "o".into() }];
        store.commit(opened, ctx().await.unwrap(), HashMap::new()).await.unwrap();
        let (a, b) = (ctx().await.unwrap(), ctx().await.unwrap());
        let event = |amount| vec![BankEvent::FundsDeposited { amount, balance: amount }];
        let other = if identical { 5 } else { 6 };
        let (ra, rb) =
            tokio::join!(store.commit(event(5), a, HashMap::new()), store.commit(event(other), b, HashMap::new()));
        let results = [ra.is_ok(), rb.is_ok()];
        assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "identical {identical}: {results:?}");
        for r in [ra, rb].into_iter().filter_map(Result::err) {
            assert!(matches!(r, AggregateError::AggregateConflict), "{r:?}");
        }
        let events = repo.get_events::<BankAccount>("acct").await.unwrap();
        assert_eq!(events.len(), 2);
        let snapshot = repo.get_snapshot::<BankAccount>("acct").await.unwrap().unwrap();
        assert_eq!((snapshot.current_sequence, snapshot.current_snapshot), (2, 1));
        assert_eq!(
            snapshot.aggregate,
            serde_json::to_value(store.load_aggregate("acct").await.unwrap().aggregate).unwrap()
        );
    }
}

fn event(id: &str, sequence: usize, amount: i64) -> SerializedEvent {
    let payload = json!({"FundsDeposited": {"amount": amount, "balance": amount}});
    SerializedEvent::new(
        id.into(),
        sequence,
        "BankAccount".into(),
        "FundsDeposited".into(),
        "1.0".into(),
        payload,
        json!({}),
    )
}

fn conflict<T: std::fmt::Debug>(r: Result<T, PersistenceError>) -> bool {
    matches!(r, Err(PersistenceError::OptimisticLockError))
}

/// A stale snapshot number, a skipped one, a conflicting sequence: each is
/// refused with `OptimisticLockError` and stores nothing, events included
/// (postgres-es stores the events of the stale-snapshot case).
#[tokio::test]
async fn stale_snapshot_numbers_and_sequences_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open_repo(dir.path());
    let state = |b: i64| Some(("a".to_string(), json!({"opened": true, "owner": "", "balance": b}), 0));
    let with_n = |b, n| state(b).map(|(id, s, _)| (id, s, n));
    let first: Vec<_> = (1..=10).map(|s| event("a", s, s as i64)).collect();
    repo.persist::<BankAccount>(&first, with_n(10, 1)).await.unwrap();
    let before = repo.get_events::<BankAccount>("a").await.unwrap();
    let stored = repo.store().stats().events;

    let refused = [
        (vec![event("a", 11, 11)], with_n(11, 1)), // stale snapshot number
        (vec![event("a", 11, 11)], with_n(11, 3)), // skips one
        (vec![event("a", 11, 11)], with_n(11, 0)),
        (vec![event("a", 10, 99)], None),          // sequence taken
        (vec![event("a", 10, 99)], with_n(99, 2)), // sequence taken, right number
        (vec![event("a", 12, 12)], None),          // a gap
        (vec![event("a", 11, 11), event("a", 13, 13)], None),
        (vec![event("a", 0, 0)], None),
    ];
    for (events, snapshot) in refused {
        let r = repo.persist::<BankAccount>(&events, snapshot.clone()).await;
        assert!(conflict(r), "{events:?} {snapshot:?}");
        assert_eq!(repo.store().stats().events, stored);
        assert_eq!(repo.get_events::<BankAccount>("a").await.unwrap(), before);
        let s = repo.get_snapshot::<BankAccount>("a").await.unwrap().unwrap();
        assert_eq!((s.current_sequence, s.current_snapshot, &s.aggregate), (10, 1, &state(10).unwrap().1));
    }
    // The right next commit goes through.
    repo.persist::<BankAccount>(&[event("a", 11, 11)], with_n(11, 2)).await.unwrap();
    let s = repo.get_snapshot::<BankAccount>("a").await.unwrap().unwrap();
    assert_eq!((s.current_sequence, s.current_snapshot), (11, 2));
    // Malformed calls are errors too, and store nothing.
    let mixed = [event("a", 12, 1), event("b", 13, 1)];
    assert!(matches!(repo.persist::<BankAccount>(&mixed, None).await, Err(PersistenceError::UnknownError(_))));
    assert!(matches!(repo.persist::<BankAccount>(&[], with_n(1, 3)).await, Err(PersistenceError::UnknownError(_))));
    repo.persist::<BankAccount>(&[], None).await.unwrap();
    assert_eq!(repo.store().stats().events, 11);
}

/// A crash between a commit and its snapshot copy, simulated by a store whose
/// snapshot copies all fail (too big for `max_snapshot_bytes`): the aggregate
/// store mode, which replays nothing after the snapshot, still loads the
/// newest state from the log, and goes on taking commands.
#[tokio::test]
async fn lost_snapshot_copies_lose_nothing_in_any_mode() {
    for mode in [Mode::Aggregate, Mode::Snapshots(3)] {
        let dir = tempfile::tempdir().unwrap();
        let view = BalanceQuery::default();
        let deposit = |amount| ("acct".to_string(), BankCommand::Deposit { amount });
        let open = ("acct".to_string(), BankCommand::Open { owner: "o".into() });
        // 1. Copies saved.
        let repo = open_repo(dir.path());
        run(&framework(repo.clone(), mode, &view), &[open, deposit(1), deposit(2)]).await;
        let copy_bytes = repo.store().latest_snapshot("BankAccount/acct").unwrap().unwrap().data.len();
        drop(repo);
        // 2. Copies lost (each new one is longer than the store now takes):
        //    the snapshot store keeps a stale copy.
        let small = Store::open(dir.path(), Options::default().max_snapshot_bytes(copy_bytes as u32)).unwrap();
        let repo = FactlogEventRepository::new(small);
        let outcomes = run(&framework(repo.clone(), mode, &view), &[deposit(400), deposit(800), deposit(1600)]).await;
        assert!(outcomes.iter().all(Result::is_ok), "{mode:?} {outcomes:?}");
        assert!(repo.snapshot_copy_errors() > 0, "{mode:?}");
        drop(repo);
        // 3. Reopened: the newest snapshot comes from the log, not the stale copy.
        let repo = open_repo(dir.path());
        let s = repo.get_snapshot::<BankAccount>("acct").await.unwrap().unwrap();
        let expected_sequence = match mode {
            Mode::Snapshots(n) => 6 / n * n,
            _ => 6,
        };
        assert_eq!(s.current_sequence, expected_sequence, "{mode:?}");
        let cqrs = framework(repo.clone(), mode, &view);
        run(&cqrs, &[deposit(32)]).await.into_iter().for_each(|o| o.unwrap());
        let store = PersistedEventStore::<_, BankAccount>::new_event_store(repo);
        assert_eq!(store.load_aggregate("acct").await.unwrap().aggregate.balance, 2835, "{mode:?}");
        assert_eq!(view.view("acct").unwrap().balance, 2835);
    }
}

/// The framework's envelopes come back as they went in (cqrs-es builds them
/// from the events; this checks its view of them).
#[tokio::test]
async fn committed_envelopes_are_what_load_returns() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open_repo(dir.path());
    let store = PersistedEventStore::<_, BankAccount>::new_event_store(repo);
    let ctx = store.load_aggregate("é/ü").await.unwrap();
    let mut meta = HashMap::new();
    meta.insert("ключ".to_string(), "值 / \\ \"".to_string());
    let events =
        vec![BankEvent::AccountOpened { owner: "ö".into() }, BankEvent::FundsDeposited { amount: 1, balance: 1 }];
    let committed: Vec<EventEnvelope<BankAccount>> = store.commit(events, ctx, meta).await.unwrap();
    let loaded = store.load_events("é/ü").await.unwrap();
    assert_eq!(format!("{committed:?}"), format!("{loaded:?}"));
}
