#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Model-based property test: random sequences of put / delete / batch write /
//! flush / compaction / close-and-reopen, checked after every step against a
//! `BTreeMap` model through `get`, `query` (every condition, both directions,
//! paginated) and `scan` (random parallel segments, paginated).
//!
//! Cases: 128 by default (`PROPTEST_CASES` overrides), up to 40 steps each.
//! Typed keys (N order against a decimal model) are in `typed_keys.rs`.

use std::collections::BTreeMap;

use kstone_core::{
    Database, Durability, Item, Key, Number, Options, Query, Scan, SortKeyCondition, Value, WriteOp,
};
use proptest::prelude::*;

type Model = BTreeMap<Key, Item>;

// No empty sort key: DynamoDB (and every write here) refuses one.
const SKS: &[&[u8]] = &[
    b"\x00",
    b"a",
    b"ab",
    b"abc",
    b"b",
    b"\xff",
    b"\xff\xff",
    b"m\x00",
];

fn pk(i: u8) -> Vec<u8> {
    format!("p{i}").into_bytes()
}

fn sk(i: Option<u8>) -> Option<Vec<u8>> {
    i.map(|i| SKS[i as usize % SKS.len()].to_vec())
}

fn item(v: u16) -> Item {
    let mut it = Item::new();
    it.insert("v".into(), Value::N(Number::parse(&v.to_string()).unwrap()));
    if v.is_multiple_of(3) {
        it.insert("s".into(), Value::S("x".repeat(v as usize % 40)));
    }
    it
}

#[derive(Debug, Clone)]
enum Step {
    Put(u8, Option<u8>, u16),
    Delete(u8, Option<u8>),
    Batch(Vec<(u8, Option<u8>, Option<u16>)>),
    /// Many items in one partition, so SSTs span several blocks.
    Bulk(u8, u16),
    Flush,
    Compact,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let key = (0u8..6, proptest::option::of(0u8..8));
    prop_oneof![
        8 => (key.clone(), any::<u16>()).prop_map(|((p, s), v)| Step::Put(p, s, v)),
        3 => key.clone().prop_map(|(p, s)| Step::Delete(p, s)),
        2 => proptest::collection::vec((0u8..6, proptest::option::of(0u8..8), proptest::option::of(any::<u16>())), 1..20)
            .prop_map(Step::Batch),
        1 => (0u8..6, any::<u16>()).prop_map(|(p, seed)| Step::Bulk(p, seed)),
        1 => Just(Step::Flush),
        1 => Just(Step::Compact),
        1 => Just(Step::Reopen),
    ]
}

fn cond() -> impl Strategy<Value = Option<SortKeyCondition>> {
    let b = (0u8..8).prop_map(|i| SKS[i as usize].to_vec());
    proptest::option::of(prop_oneof![
        b.clone().prop_map(SortKeyCondition::Eq),
        b.clone().prop_map(SortKeyCondition::Lt),
        b.clone().prop_map(SortKeyCondition::Le),
        b.clone().prop_map(SortKeyCondition::Gt),
        b.clone().prop_map(SortKeyCondition::Ge),
        (b.clone(), b.clone()).prop_map(|(x, y)| if x <= y {
            SortKeyCondition::Between(x, y)
        } else {
            SortKeyCondition::Between(y, x)
        }),
        b.prop_map(SortKeyCondition::BeginsWith),
    ])
}

fn opts() -> Options {
    Options {
        durability: Durability::Buffered,
        memtable_stripe_bytes: 600,
        compaction_trigger: 3,
        ..Options::default()
    }
}

fn check(
    db: &Database,
    model: &Model,
    q: &(u8, Option<SortKeyCondition>, bool, usize),
    scan: &(usize, usize),
) {
    // Point reads of every key that ever could exist.
    for p in 0..6u8 {
        for s in std::iter::once(None).chain((0..8u8).map(Some)) {
            let k = Key::new(&pk(p), sk(s).as_deref()).unwrap();
            assert_eq!(
                db.get(&k.pk, k.sk.as_deref()).unwrap().as_ref(),
                model.get(&k),
                "get {k:?}"
            );
        }
    }
    // A paginated query.
    let (qp, c, reverse, limit) = q;
    let mut want: Vec<(Key, Item)> = model
        .iter()
        .filter(|(k, _)| k.pk == pk(*qp))
        .filter(|(k, _)| c.as_ref().is_none_or(|c| c.matches(k.sk.as_deref())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if *reverse {
        want.reverse();
    }
    let mut got = Vec::new();
    let mut query = Query::new(&pk(*qp));
    query.condition = c.clone();
    query.reverse = *reverse;
    query.limit = Some(*limit);
    for _ in 0..10_000 {
        let page = db.query(&query).unwrap();
        assert!(page.items.len() <= *limit);
        got.extend(page.items);
        match page.last_evaluated_key {
            Some(k) => query.exclusive_start = Some(k),
            None => break,
        }
    }
    assert!(
        got == want,
        "query {q:?}: {} items, model has {}",
        got.len(),
        want.len()
    );
    // A parallel scan, every segment paginated.
    let (total, limit) = *scan;
    let mut all: Vec<(Key, Item)> = Vec::new();
    for seg in 0..total {
        let mut s = Scan {
            limit: Some(limit),
            segment: seg,
            total_segments: total,
            exclusive_start: None,
        };
        for _ in 0..10_000 {
            let page = db.scan(&s).unwrap();
            all.extend(page.items);
            match page.last_evaluated_key {
                Some(k) => s.exclusive_start = Some(k),
                None => break,
            }
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(Key, Item)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(
        all == want,
        "scan {scan:?}: {} items, model has {}",
        all.len(),
        want.len()
    );
    // The streaming whole-database walk sees the same items.
    let mut streamed: Vec<(Key, Item)> = Vec::new();
    let n = db
        .for_each_item(|k, i| {
            streamed.push((k.clone(), i.clone()));
            Ok::<(), kstone_core::Error>(())
        })
        .unwrap();
    streamed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(n as usize, streamed.len());
    assert!(
        streamed == want,
        "for_each_item: {} items, model has {}",
        streamed.len(),
        want.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(
        steps in proptest::collection::vec(
            (step(), (0u8..6, cond(), any::<bool>(), 1usize..5), (1usize..5, 1usize..7)),
            1..40,
        )
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m.keystone");
        let mut db = Database::create(&dir, opts()).unwrap();
        let mut model = Model::new();
        for (st, q, scan) in &steps {
            match st {
                Step::Put(p, s, v) => {
                    db.put(&pk(*p), sk(*s).as_deref(), &item(*v)).unwrap();
                    model.insert(Key::new(&pk(*p), sk(*s).as_deref()).unwrap(), item(*v));
                }
                Step::Delete(p, s) => {
                    db.delete(&pk(*p), sk(*s).as_deref()).unwrap();
                    model.remove(&Key::new(&pk(*p), sk(*s).as_deref()).unwrap());
                }
                Step::Batch(ops) => {
                    let ops: Vec<WriteOp> = ops.iter().map(|(p, s, v)| match v {
                        Some(v) => WriteOp::Put { pk: pk(*p), sk: sk(*s), item: item(*v) },
                        None => WriteOp::Delete { pk: pk(*p), sk: sk(*s) },
                    }).collect();
                    db.write_batch(&ops).unwrap();
                    for op in ops {
                        match op {
                            WriteOp::Put { pk, sk, item } => { model.insert(Key::new(&pk, sk.as_deref()).unwrap(), item); }
                            WriteOp::Delete { pk, sk } => { model.remove(&Key::new(&pk, sk.as_deref()).unwrap()); }
                        }
                    }
                }
                Step::Bulk(p, seed) => {
                    let ops: Vec<WriteOp> = (0..120u16).map(|i| {
                        let sk = format!("{}{:03}", SKS[(i % 8) as usize].escape_ascii(), i.wrapping_mul(*seed) % 500).into_bytes();
                        WriteOp::Put { pk: pk(*p), sk: Some(sk), item: item(seed.wrapping_add(i)) }
                    }).collect();
                    db.write_batch(&ops).unwrap();
                    for op in ops {
                        if let WriteOp::Put { pk, sk, item } = op {
                            model.insert(Key::new(&pk, sk.as_deref()).unwrap(), item);
                        }
                    }
                }
                Step::Flush => db.flush().unwrap(),
                Step::Compact => db.compact().unwrap(),
                Step::Reopen => {
                    db.close().unwrap();
                    db = Database::open(&dir, opts()).unwrap();
                }
            }
            check(&db, &model, q, scan);
        }
    }
}
