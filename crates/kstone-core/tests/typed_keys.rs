#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Typed keys: a database written before them (the checked-in format-1
//! fixture) keeps working; a typed database orders N sort keys numerically,
//! checked against a decimal model through get and every query condition.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;

use kstone_core::{
    export_line, Database, Durability, Item, KeyAttr, KeySchema, KeyType, Number, Options, Query,
    SortKeyRule, TypedCondition, Value,
};
use proptest::prelude::*;

mod common;
use common::copy_dir;

fn export(db: &Database) -> Vec<String> {
    let mut out = Vec::new();
    db.for_each_item(|k, i| {
        out.push(export_line(db.key_schema(), k, i));
        Ok::<(), kstone_core::Error>(())
    })
    .unwrap();
    out.sort();
    out
}

#[test]
fn a_format_1_database_keeps_working() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("old.keystone");
    copy_dir(&fixtures.join("format1.keystone"), &dir);
    // Directories git cannot hold (empty in the fixture).
    for d in ["pins", "commit"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let manifest_version = |dir: &Path| {
        let b = std::fs::read(dir.join("MANIFEST")).unwrap();
        u32::from_le_bytes(b[8..12].try_into().unwrap())
    };
    assert_eq!(manifest_version(&dir), 1);
    let report = kstone_core::check::check(&dir).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(
        Database::key_schema_of(&dir).unwrap(),
        KeySchema::bytes(),
        "format 1 reads as byte keys"
    );

    let mut want: Vec<String> = std::fs::read_to_string(fixtures.join("format1.export.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    want.sort();
    let db = Database::open(&dir, Options::default()).unwrap();
    assert_eq!(export(&db), want, "the old build's export, byte for byte");
    // Its keys read as they did: UTF-8 bytes as S, others as B.
    let b = db.get(&[0xff, 0, 1], Some(&[0x80])).unwrap().unwrap();
    assert_eq!(b.get("from"), Some(&Value::S("binary pk".into())));
    assert!(db.get(b"user#1", Some(b"10")).unwrap().is_some());
    // Writes go on as before; N keys are refused with what to do.
    let item = kstone_core::item_from_plain_json(r#"{"new":1}"#).unwrap();
    db.put(b"user#4", Some(b"x"), &item).unwrap();
    let err = db
        .key(
            &KeyAttr::S("user#4".into()),
            Some(&KeyAttr::N(Number::parse("1").unwrap())),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("N keys need a database created with typed keys"),
        "{err}"
    );
    // The item a format-1 database accepted with an empty sort key can be deleted.
    db.delete(b"user#3", Some(b"")).unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    // Written back as version 2, still byte keys, nothing lost.
    assert_eq!(manifest_version(&dir), 2);
    let db = Database::open(&dir, Options::default()).unwrap();
    assert_eq!(db.key_schema(), &KeySchema::bytes());
    let mut want2: Vec<String> = want
        .into_iter()
        .filter(|l| !l.contains(r#""pk":{"S":"user#3"}"#))
        .chain([r#"{"item":{"new":{"N":"1"}},"pk":{"S":"user#4"},"sk":{"S":"x"}}"#.to_string()])
        .collect();
    want2.sort();
    assert_eq!(export(&db), want2);
    db.close().unwrap();
    let report = kstone_core::check::check(&dir).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
}

#[test]
fn declared_schema_is_enforced_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t.keystone");
    let schema = KeySchema::typed(Some(KeyType::N), SortKeyRule::Absent);
    let db = Database::create_with_keys(&dir, Options::default(), schema).unwrap();
    let item = Item::new();
    let k = db
        .key(&KeyAttr::N(Number::parse("42").unwrap()), None)
        .unwrap();
    db.put(&k.pk, None, &item).unwrap();
    assert!(db.put(b"42", None, &item).is_err(), "an S partition key");
    assert!(db.put(&k.pk, Some(b"x"), &item).is_err(), "a sort key");
    db.close().unwrap();
    let db = Database::open(&dir, Options::default()).unwrap();
    assert_eq!(db.key_schema(), &schema);
    assert!(db.get(&k.pk, None).unwrap().is_some());
    assert_eq!(db.stats().unwrap().key_schema, schema);
    db.close().unwrap();
}

/// `check` reads every SST key against the key schema: a key a typed
/// database cannot hold (here: a MANIFEST altered to claim typed keys over
/// byte keys) is a problem naming the file.
#[test]
fn check_reports_keys_outside_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c.keystone");
    let db = Database::create(&dir, Options::default()).unwrap();
    db.put(&[0xc3, 0x28], Some(b"x"), &Item::new()).unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    assert!(kstone_core::check::check(&dir).unwrap().problems.is_empty());
    let mut m = kstone_core::manifest::Manifest::load(&dir).unwrap();
    m.key_schema = KeySchema::typed(None, SortKeyRule::Optional);
    m.store(&dir).unwrap();
    let report = kstone_core::check::check(&dir).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(".sst: a key that does not fit the key schema")),
        "{report:?}"
    );
}

// ---- the decimal model ----

/// A sort key in the model: N as an exact decimal `m / 10^scale`, normalized
/// so equal numbers are equal keys.
#[derive(Debug, Clone)]
enum MSk {
    S(String),
    N(i64, u32),
    B(Vec<u8>),
}

fn norm(mut m: i64, mut scale: u32) -> (i64, u32) {
    if m == 0 {
        return (0, 0);
    }
    while scale > 0 && m % 10 == 0 {
        m /= 10;
        scale -= 1;
    }
    (m, scale)
}

impl MSk {
    fn rank(&self) -> u8 {
        match self {
            MSk::S(_) => 0,
            MSk::N(..) => 1,
            MSk::B(_) => 2,
        }
    }

    fn attr(&self) -> KeyAttr {
        match self {
            MSk::S(s) => KeyAttr::S(s.clone()),
            MSk::N(m, s) => KeyAttr::N(Number::parse(&format!("{m}e-{s}")).unwrap()),
            MSk::B(b) => KeyAttr::B(b.clone()),
        }
    }

    fn from_attr(a: &KeyAttr) -> MSk {
        match a {
            KeyAttr::S(s) => MSk::S(s.clone()),
            KeyAttr::B(b) => MSk::B(b.clone()),
            KeyAttr::N(n) => {
                let t = n.as_str();
                let (int, frac) = t.split_once('.').unwrap_or((t, ""));
                let m: i64 = format!("{int}{frac}").parse().unwrap();
                let (m, s) = norm(m, frac.len() as u32);
                MSk::N(m, s)
            }
        }
    }
}

impl Ord for MSk {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (MSk::S(a), MSk::S(b)) => a.as_bytes().cmp(b.as_bytes()),
            (MSk::B(a), MSk::B(b)) => a.cmp(b),
            (MSk::N(a, sa), MSk::N(b, sb)) => {
                (i128::from(*a) * 10i128.pow(*sb)).cmp(&(i128::from(*b) * 10i128.pow(*sa)))
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}
impl PartialOrd for MSk {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for MSk {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for MSk {}

fn msk() -> impl Strategy<Value = MSk> {
    prop_oneof![
        prop::sample::select(vec!["a", "ab", "b", "é", "10", "9"]).prop_map(|s| MSk::S(s.into())),
        (-2000i64..2000, 0u32..4).prop_map(|(m, s)| {
            let (m, s) = norm(m, s);
            MSk::N(m, s)
        }),
        (-2000i64..2000, 0u32..4).prop_map(|(m, s)| {
            let (m, s) = norm(m, s);
            MSk::N(m, s)
        }),
        prop::sample::select(vec![vec![0u8], vec![0, 1], vec![0xff], vec![1]]).prop_map(MSk::B),
    ]
}

fn pk_attr(i: u8) -> KeyAttr {
    match i % 3 {
        0 => KeyAttr::S(format!("p{i}")),
        1 => KeyAttr::N(Number::parse(&format!("-{i}.5")).unwrap()),
        _ => KeyAttr::B(vec![i, 0xff]),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Between,
    BeginsWith,
}

fn model_matches(op: &Op, a: &MSk, b: &MSk, sk: &MSk) -> bool {
    if sk.rank() != a.rank() {
        return false; // a condition matches sort keys of its type only
    }
    match op {
        Op::Eq => sk == a,
        Op::Lt => sk < a,
        Op::Le => sk <= a,
        Op::Gt => sk > a,
        Op::Ge => sk >= a,
        Op::Between => {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            lo.rank() == hi.rank() && sk >= lo && sk <= hi
        }
        Op::BeginsWith => match (sk, a) {
            (MSk::S(s), MSk::S(p)) => s.starts_with(p.as_str()),
            (MSk::B(s), MSk::B(p)) => s.starts_with(p),
            _ => false,
        },
    }
}

#[derive(Debug, Clone)]
enum Step {
    Put(u8, MSk, u16),
    Delete(u8, MSk),
    Flush,
    Compact,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..3, msk(), any::<u16>()).prop_map(|(p, s, v)| Step::Put(p, s, v)),
        3 => (0u8..3, msk()).prop_map(|(p, s)| Step::Delete(p, s)),
        1 => Just(Step::Flush),
        1 => Just(Step::Compact),
        1 => Just(Step::Reopen),
    ]
}

fn query_strategy() -> impl Strategy<Value = (u8, Option<(Op, MSk, MSk)>, bool, usize)> {
    let op = prop::sample::select(vec![
        Op::Eq,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Between,
        Op::BeginsWith,
    ]);
    (
        0u8..3,
        proptest::option::of((op, msk(), msk())),
        any::<bool>(),
        1usize..6,
    )
}

fn item(v: u16) -> Item {
    let mut it = Item::new();
    it.insert("v".into(), Value::N(Number::parse(&v.to_string()).unwrap()));
    it
}

fn opts() -> Options {
    Options {
        durability: Durability::Buffered,
        memtable_stripe_bytes: 600,
        compaction_trigger: 3,
        ..Options::default()
    }
}

type Model = BTreeMap<(u8, MSk), u16>;

fn check_query(db: &Database, model: &Model, q: &(u8, Option<(Op, MSk, MSk)>, bool, usize)) {
    let schema = *db.key_schema();
    let (p, c, reverse, limit) = q;
    let cond = c.as_ref().map(|(op, a, b)| match op {
        Op::Eq => TypedCondition::Eq(a.attr()),
        Op::Lt => TypedCondition::Lt(a.attr()),
        Op::Le => TypedCondition::Le(a.attr()),
        Op::Gt => TypedCondition::Gt(a.attr()),
        Op::Ge => TypedCondition::Ge(a.attr()),
        Op::Between => {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            TypedCondition::Between(lo.attr(), hi.attr())
        }
        Op::BeginsWith => TypedCondition::BeginsWith(a.attr()),
    });
    let engine_cond = match cond.as_ref().map(|c| schema.condition(c)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => {
            // Refused: begins_with on N, or between bounds of two types.
            let (op, a, b) = c.as_ref().unwrap();
            let between_types = matches!(op, Op::Between) && a.rank() != b.rank();
            let begins_n = matches!(op, Op::BeginsWith) && matches!(a, MSk::N(..));
            assert!(between_types || begins_n, "refused {c:?}");
            return;
        }
    };
    let mut want: Vec<(MSk, u16)> = model
        .iter()
        .filter(|((mp, _), _)| mp == p)
        .filter(|((_, sk), _)| {
            c.as_ref()
                .is_none_or(|(op, a, b)| model_matches(op, a, b, sk))
        })
        .map(|((_, sk), v)| (sk.clone(), *v))
        .collect();
    if *reverse {
        want.reverse();
    }
    let mut query = Query::new(&schema.encode(&pk_attr(*p)).unwrap());
    query.condition = engine_cond;
    query.reverse = *reverse;
    query.limit = Some(*limit);
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let page = db.query(&query).unwrap();
        for (k, it) in &page.items {
            let sk = schema.decode(k.sk.as_deref().unwrap()).unwrap();
            let Some(Value::N(v)) = it.get("v") else {
                panic!("item {it:?}")
            };
            got.push((MSk::from_attr(&sk), v.as_str().parse::<u16>().unwrap()));
        }
        match page.last_evaluated_key {
            Some(k) => query.exclusive_start = Some(k),
            None => break,
        }
    }
    assert_eq!(got, want, "query {q:?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn typed_keys_match_a_decimal_model(
        steps in proptest::collection::vec((step(), query_strategy()), 1..30)
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("typed.keystone");
        let schema = KeySchema::typed(None, SortKeyRule::Required(KeyType::N));
        // Sort keys of every type: a schema that allows them all.
        let schema = if steps.len() % 2 == 0 { KeySchema::typed(None, SortKeyRule::Optional) } else { schema };
        let mut db = Database::create_with_keys(&dir, opts(), schema).unwrap();
        let mut model = Model::new();
        for (st, q) in &steps {
            match st {
                Step::Put(p, sk, v) => {
                    let k = db.key(&pk_attr(*p), Some(&sk.attr()));
                    let allowed = schema.sk == SortKeyRule::Optional || matches!(sk, MSk::N(..));
                    prop_assert_eq!(k.is_ok(), allowed, "{:?}", sk);
                    if let Ok(k) = k {
                        db.put(&k.pk, k.sk.as_deref(), &item(*v)).unwrap();
                        model.insert((*p, sk.clone()), *v);
                    }
                }
                Step::Delete(p, sk) => {
                    if let Ok(k) = db.key(&pk_attr(*p), Some(&sk.attr())) {
                        db.delete(&k.pk, k.sk.as_deref()).unwrap();
                        model.remove(&(*p, sk.clone()));
                    }
                }
                Step::Flush => db.flush().unwrap(),
                Step::Compact => db.compact().unwrap(),
                Step::Reopen => {
                    db.close().unwrap();
                    db = Database::open(&dir, opts()).unwrap();
                }
            }
            // Point reads of every key in the model.
            for ((p, sk), v) in &model {
                let k = db.key(&pk_attr(*p), Some(&sk.attr())).unwrap();
                prop_assert_eq!(db.get(&k.pk, k.sk.as_deref()).unwrap(), Some(item(*v)));
            }
            if schema.sk == SortKeyRule::Optional || q.1.as_ref().is_none_or(|(_, a, b)| matches!((a, b), (MSk::N(..), MSk::N(..)))) {
                check_query(&db, &model, q);
            }
        }
    }
}
