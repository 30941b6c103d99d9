//! Unit tests of the crash harness: the checker against hand-made
//! histories, the protocol, the write and kill plans.

use serde_json::Value;

use super::child::{plan_write, run_write};
use super::*;
use crate::ChangeKind;

fn record(revision: u64, body: Option<Value>) -> Record {
    Record {
        revision,
        body: body.map(|v| match v {
            Value::Object(map) => map.into(),
            _ => Body::new().into(),
        }),
    }
}

fn change(seq: u64, name: &str, revision: u64, kind: ChangeKind) -> Change {
    Change {
        seq,
        key: Key::new(COLLECTION, name).unwrap(),
        revision,
        kind,
    }
}

fn intent(name: &str, r: &Record) -> Line {
    Line::Intent {
        name: name.to_owned(),
        record: r.clone(),
    }
}

fn ack(name: &str, r: &Record) -> Line {
    Line::Ack {
        name: name.to_owned(),
        record: r.clone(),
    }
}

/// A model in which k0 was acknowledged at revisions 1 and 2 and a
/// third write is in flight.
fn two_acks_and_one_in_flight(rule: FeedRule) -> (Model, [Record; 3]) {
    let mut model = Model::new(rule);
    let r1 = record(1, Some(json!({"counter": 1})));
    let r2 = record(2, Some(json!({"counter": 2})));
    let r3 = record(3, Some(json!({"counter": 3})));
    for line in [
        Line::Ready,
        intent("k0", &r1),
        ack("k0", &r1),
        intent("k0", &r2),
        ack("k0", &r2),
        intent("k0", &r3),
    ] {
        model.line(line).unwrap();
    }
    (model, [r1, r2, r3])
}

#[test]
fn lines_round_trip_even_after_libtest_output() {
    let lines = [
        Line::Ready,
        intent("k0", &record(4, Some(json!({"a": "x y\nz", "n": [1, 2]})))),
        ack("k2", &record(5, None)),
        Line::Error("two\nlines".to_owned()),
    ];
    for line in lines {
        let text = format!("test crash ... {}", line.render());
        let parsed = Line::parse(&text).unwrap().unwrap();
        match (&line, parsed) {
            (Line::Error(_), Line::Error(message)) => assert_eq!(message, "two | lines"),
            (_, parsed) => assert_eq!(parsed, line),
        }
    }
    assert_eq!(Line::parse("running 1 test\n").unwrap(), None);
    assert!(Line::parse(&format!("{PREFIX}ack k0 x {{}}")).is_err());
    assert!(Line::parse(&format!("{PREFIX}ack k0 1")).is_err());
    assert!(Line::parse(&format!("{PREFIX}bogus")).is_err());
}

#[test]
fn a_lost_acknowledged_write_is_flagged() {
    let (mut model, [r1, _, _]) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
    let error = model.resolve(&[Some(r1), None, None]).unwrap_err();
    assert!(
        error.contains("crash/k0 lost an acknowledged write"),
        "{error}"
    );
    assert!(error.contains("revision 2"), "{error}");
}

#[test]
fn messages_cut_long_strings_short() {
    let long = record(
        1,
        Some(json!({"pad": "x".repeat(5000), "n": ["y".repeat(20)]})),
    );
    let text = describe(Some(&long));
    assert!(text.len() < 160, "{text}");
    assert!(text.contains("(5000 bytes)"), "{text}");
    assert_eq!(describe(Some(&record(2, None))), "revision 2 (deleted)");
    assert_eq!(describe(None), "never written");
}

#[test]
fn a_key_rolled_back_to_never_written_is_flagged() {
    let (mut model, _) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
    let error = model.resolve(&[None, None, None]).unwrap_err();
    assert!(error.contains("lost an acknowledged write"), "{error}");
}

#[test]
fn a_state_nobody_wrote_is_flagged() {
    let (mut model, [_, r2, _]) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
    let forged = record(3, Some(json!({"counter": 99})));
    let error = model.resolve(&[Some(forged), None, None]).unwrap_err();
    assert!(error.contains("holds a state nobody wrote"), "{error}");
    let mut model = Model::new(FeedRule::ExactlyOnce);
    model.commit(0, r2.clone());
    let error = model
        .resolve(&[Some(r2), Some(record(1, Some(json!({})))), None])
        .unwrap_err();
    assert!(
        error.contains("crash/k1 holds a state nobody wrote"),
        "{error}"
    );
}

#[test]
fn a_torn_body_at_the_right_revision_is_flagged() {
    let (mut model, _) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
    let torn = record(3, Some(json!({})));
    assert!(model.resolve(&[Some(torn), None, None]).is_err());
}

#[test]
fn the_write_in_flight_may_have_committed_or_not() {
    let (mut model, [_, r2, r3]) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
    assert_eq!(
        model.resolve(&[Some(r3.clone()), None, None]),
        Ok(Resolution::Committed)
    );
    assert_eq!(model.known[0], Some(r3));
    let (mut model, _) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
    assert_eq!(
        model.resolve(&[Some(r2.clone()), None, None]),
        Ok(Resolution::Lost)
    );
    assert_eq!(model.known[0], Some(r2));
    assert_eq!(model.abandoned.len(), 1);
    assert_eq!(
        model.resolve(&[Some(model.known[0].clone().unwrap()), None, None]),
        Ok(Resolution::Idle)
    );
}

#[test]
fn protocol_violations_are_flagged() {
    let mut model = Model::new(FeedRule::ExactlyOnce);
    let r1 = record(1, Some(json!({"counter": 1})));
    assert!(model
        .line(ack("k0", &r1))
        .unwrap_err()
        .contains("without announcing"));
    model.line(intent("k0", &r1)).unwrap();
    let other = record(1, Some(json!({"counter": 7})));
    assert!(model
        .line(ack("k0", &other))
        .unwrap_err()
        .contains("announced"));
    let mut model = Model::new(FeedRule::ExactlyOnce);
    let stale = record(2, Some(json!({})));
    assert!(model
        .line(intent("k1", &stale))
        .unwrap_err()
        .contains("different state"));
    assert!(model.line(intent("k9", &r1)).is_err());
    assert!(model
        .line(Line::Error("disk full".to_owned()))
        .unwrap_err()
        .contains("disk full"));
}

#[test]
fn the_listing_must_show_exactly_the_live_keys() {
    let mut model = Model::new(FeedRule::ExactlyOnce);
    model.commit(0, record(1, Some(json!({}))));
    model.commit(1, record(1, Some(json!({}))));
    model.commit(1, record(2, None));
    let listed = |names: &[(&str, u64)]| -> Vec<Entry> {
        names
            .iter()
            .map(|(name, revision)| Entry {
                name: (*name).to_owned(),
                revision: *revision,
            })
            .collect()
    };
    assert_eq!(model.check_listing(&listed(&[("k0", 1)])), Ok(()));
    assert!(model.check_listing(&listed(&[])).is_err());
    assert!(model
        .check_listing(&listed(&[("k0", 1), ("k1", 2)]))
        .is_err());
    assert!(model.check_listing(&listed(&[("k0", 2)])).is_err());
}

#[test]
fn the_feed_must_hold_every_committed_write_in_order() {
    let (mut model, [_, _, r3]) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
    model.resolve(&[Some(r3), None, None]).unwrap();
    let full = [
        change(1, "k0", 1, ChangeKind::Created),
        change(2, "k0", 2, ChangeKind::Updated),
        change(3, "k0", 3, ChangeKind::Updated),
    ];
    assert_eq!(model.check_whole_feed(&full), Ok(0));
    // A lost line, a reordering, a wrong kind, a seq going back.
    let missing = model.check_whole_feed(&full[..2]).unwrap_err();
    assert!(
        missing.contains("lacks the committed write crash/k0 revision 3"),
        "{missing}"
    );
    let reordered = [full[1].clone(), full[0].clone(), full[2].clone()];
    assert!(model.check_whole_feed(&reordered).is_err());
    let mut wrong_kind = full.clone();
    wrong_kind[0].kind = ChangeKind::Updated;
    assert!(model.check_whole_feed(&wrong_kind).is_err());
    let mut backwards = full.clone();
    backwards[2].seq = 2;
    let error = model.check_whole_feed(&backwards).unwrap_err();
    assert!(error.contains("follows"), "{error}");
    // Checked in two steps, the second starts after the first's cursor.
    assert_eq!(model.check_new_changes(&full), Ok(0));
    assert_eq!(model.feed_cursor, 3);
    model.commit(1, record(1, Some(json!({}))));
    assert!(model.check_new_changes(&[]).is_err());
    let created = change(4, "k1", 1, ChangeKind::Created);
    assert_eq!(model.check_new_changes(&[created]), Ok(0));
}

/// k0 acknowledged at 1 and 2, its third write lost at a kill, then
/// written at revision 3 by the parent; k1 created after that.
fn a_write_lost_then_redone(rule: FeedRule) -> Model {
    let (mut model, [_, r2, _]) = two_acks_and_one_in_flight(rule);
    assert_eq!(model.resolve(&[Some(r2), None, None]), Ok(Resolution::Lost));
    model.commit(0, record(3, Some(json!({"parent": 1}))));
    model.commit(1, record(1, Some(json!({}))));
    model
}

#[test]
fn only_at_least_once_allows_a_line_of_an_uncommitted_write() {
    let feed = [
        change(1, "k0", 1, ChangeKind::Created),
        change(2, "k0", 2, ChangeKind::Updated),
        change(3, "k0", 3, ChangeKind::Updated),
        change(4, "k0", 3, ChangeKind::Updated),
        change(5, "k1", 1, ChangeKind::Created),
    ];
    let exactly = a_write_lost_then_redone(FeedRule::ExactlyOnce);
    assert!(exactly.check_whole_feed(&feed).is_err());
    let at_least = a_write_lost_then_redone(FeedRule::AtLeastOnce);
    assert_eq!(at_least.check_whole_feed(&feed), Ok(1));
    // Without the extra line both rules are satisfied.
    let without = [&feed[..3], &feed[4..]].concat();
    assert_eq!(exactly.check_whole_feed(&without), Ok(0));
    assert_eq!(at_least.check_whole_feed(&without), Ok(0));
    // Never twice, never out of its place, never for another write.
    let mut twice = feed.to_vec();
    twice.insert(4, change(9, "k0", 3, ChangeKind::Updated));
    for (i, c) in twice.iter_mut().enumerate() {
        c.seq = i as u64 + 1;
    }
    assert!(at_least.check_whole_feed(&twice).is_err());
    let late = [
        feed[0].clone(),
        feed[1].clone(),
        feed[2].clone(),
        change(4, "k1", 1, ChangeKind::Created),
        change(5, "k0", 3, ChangeKind::Updated),
    ];
    assert!(at_least.check_whole_feed(&late).is_err());
    let mut phantom = feed.to_vec();
    phantom[2] = change(3, "k0", 3, ChangeKind::Deleted);
    assert!(at_least.check_whole_feed(&phantom).is_err());
}

#[test]
fn an_uncommitted_line_is_accepted_when_read_before_its_redo() {
    let (mut model, [_, r2, _]) = two_acks_and_one_in_flight(FeedRule::AtLeastOnce);
    let first = [
        change(1, "k0", 1, ChangeKind::Created),
        change(2, "k0", 2, ChangeKind::Updated),
    ];
    model.check_new_changes(&first).unwrap();
    model.resolve(&[Some(r2), None, None]).unwrap();
    let extra = change(3, "k0", 3, ChangeKind::Updated);
    assert_eq!(model.check_new_changes(std::slice::from_ref(&extra)), Ok(1));
    model.commit(0, record(3, Some(json!({"parent": 1}))));
    let redo = change(4, "k0", 3, ChangeKind::Updated);
    assert_eq!(model.check_new_changes(std::slice::from_ref(&redo)), Ok(0));
    // A second copy of the uncommitted line is not accepted.
    assert!(model
        .check_new_changes(&[change(5, "k0", 3, ChangeKind::Updated)])
        .is_err());
    assert_eq!(
        model.check_whole_feed(&[first[0].clone(), first[1].clone(), extra, redo]),
        Ok(1)
    );
}

#[test]
fn planned_writes_chain_revisions_and_recreate_after_a_delete() {
    let store = Store::open(crate::MemoryBackend::new());
    let key = Key::new(COLLECTION, "k0").unwrap();
    let mut rng = SplitMix(7);
    let mut state: Option<Record> = None;
    let mut deletes = 0;
    for op in 0..300 {
        let (write, expected) = plan_write(&mut rng, &store, &key, state.as_ref(), 7, op).unwrap();
        let record = run_write(&store, &key, &write).unwrap();
        assert_eq!(record, expected);
        assert_eq!(record.revision, op + 1);
        deletes += usize::from(record.body.is_none());
        state = Some(record);
    }
    assert!(deletes > 5, "only {deletes} deletes");
}

#[test]
fn kill_plans_mix_early_and_in_write_moments() {
    let mut rng = SplitMix(1);
    let plans: Vec<KillPlan> = (0..1000)
        .map(|_| {
            plan_kill(
                &mut rng,
                &Pace {
                    startup: Duration::from_millis(20),
                    write_interval: Duration::from_millis(4),
                },
            )
        })
        .collect();
    let early = plans
        .iter()
        .filter(|p| matches!(p, KillPlan::AfterStart(_)))
        .count();
    assert!((80..250).contains(&early), "{early} early kills");
    assert!(plans
        .iter()
        .any(|p| matches!(p, KillPlan::AfterAcks { acks: 0, .. })));
    assert!(plans
        .iter()
        .any(|p| matches!(p, KillPlan::AfterAcks { acks, .. } if *acks >= 10)));
    assert!(plans.iter().all(|p| match p {
        KillPlan::AfterAcks { delay, .. } => *delay < Duration::from_millis(8),
        KillPlan::AfterStart(delay) => *delay < Duration::from_millis(40),
    }));
}

#[test]
fn the_pace_follows_the_last_child() {
    let spawned = Instant::now();
    let mut pace = Pace::default();
    let mut run = ChildRun {
        spawned,
        lines: Vec::new(),
        ready: false,
        ready_after: None,
        ack_times: vec![spawned],
    };
    pace.update(&run);
    assert_eq!(pace.startup, Pace::default().startup);
    assert_eq!(pace.write_interval, Pace::default().write_interval);
    take_line(
        &mut run,
        spawned + Duration::from_millis(3),
        &Line::Ready.render(),
    )
    .unwrap();
    run.ack_times = (0..5)
        .map(|i| spawned + Duration::from_millis(10 + 2 * i))
        .collect();
    pace.update(&run);
    assert!(run.ready);
    assert_eq!(pace.startup, Duration::from_millis(3));
    assert_eq!(pace.write_interval, Duration::from_millis(2));
}

#[test]
fn within_deadline_returns_the_value_and_its_time() {
    let (value, took) = within_deadline("add", RESPONSIVE_DEADLINE, || 2 + 2).unwrap();
    assert_eq!(value, 4);
    assert!(took < RESPONSIVE_DEADLINE);
}

#[test]
fn a_hung_step_fails_at_its_deadline() {
    let error = within_deadline("write", Duration::from_millis(20), || {
        thread::sleep(Duration::from_millis(500));
    })
    .unwrap_err();
    assert!(error.contains("could not write within 20ms"), "{error}");
    let error = within_deadline("read", RESPONSIVE_DEADLINE, || panic!("boom")).unwrap_err();
    assert!(error.contains("panicked"), "{error}");
}

#[test]
fn failures_name_the_seed_and_the_kill() {
    let failure = CrashFailure {
        seed: 42,
        kill: 7,
        reason: "crash/k0 lost an acknowledged write".to_owned(),
    };
    assert_eq!(
        failure.to_string(),
        "crash campaign (seed 42), after kill 7: crash/k0 lost an acknowledged write"
    );
    assert!(CrashFailure { kill: 0, ..failure }
        .to_string()
        .contains("final check"));
}

#[test]
fn a_child_environment_is_recognised() {
    // The variable is not set in unit tests; the campaign sets it.
    if std::env::var_os(LOCATION_ENV).is_none() {
        assert_eq!(CrashChild::from_env(), None);
    }
    let campaign = CrashCampaign::new("t", Path::new("/x"));
    assert_eq!(campaign.kills, DEFAULT_KILLS * soak_factor() as usize);
    assert_eq!(campaign.feed_rule, FeedRule::ExactlyOnce);
}
