//! A database's key schema: whether its keys are typed, and the types (and
//! the presence of a sort key) it enforces — DynamoDB's `KeySchema` plus
//! `AttributeDefinitions`. Fixed at creation and kept in the `MANIFEST`.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::key::{MAX_PK_BYTES, MAX_SK_BYTES};
use super::key_attr::{KeyAttr, KeyType};
use crate::error::{Error, Result};
use crate::read::query::SortKeyCondition;

/// How key bytes are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEncoding {
    /// Format-1 databases (and [`crate::Database::create`]): keys are plain
    /// bytes, shown as S when they are UTF-8 and B otherwise; no N keys.
    Bytes,
    /// Key parts carry their type ([`KeyAttr::to_stored`]).
    Typed,
}

/// What a database requires of sort keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKeyRule {
    /// Items may have a sort key of any type, or none.
    Optional,
    /// No item has a sort key (a partition-key-only table).
    Absent,
    /// Every item has a sort key of this type.
    Required(KeyType),
}

/// A database's key schema.
///
/// ```
/// use kstone_core::{KeyAttr, KeySchema, KeyType, Number, SortKeyRule};
/// let schema = KeySchema::typed(Some(KeyType::S), SortKeyRule::Required(KeyType::N));
/// let pk = schema.encode(&KeyAttr::S("user#1".into())).unwrap();
/// let sk = schema.encode(&KeyAttr::N(Number::parse("7").unwrap())).unwrap();
/// assert!(schema.check_put(&pk, Some(&sk)).is_ok());
/// assert!(schema.check_put(&pk, None).is_err()); // the sort key is required
/// assert!(schema.check_put(&pk, Some(b"7")).is_err()); // an S where N is declared
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySchema {
    pub encoding: KeyEncoding,
    /// The declared partition key type (None: any type).
    pub pk: Option<KeyType>,
    pub sk: SortKeyRule,
}

impl KeySchema {
    /// Plain byte keys (format 1's meaning).
    pub const fn bytes() -> KeySchema {
        KeySchema {
            encoding: KeyEncoding::Bytes,
            pk: None,
            sk: SortKeyRule::Optional,
        }
    }

    /// Typed keys with the given declarations.
    pub const fn typed(pk: Option<KeyType>, sk: SortKeyRule) -> KeySchema {
        KeySchema {
            encoding: KeyEncoding::Typed,
            pk,
            sk,
        }
    }

    pub fn is_typed(&self) -> bool {
        self.encoding == KeyEncoding::Typed
    }

    /// The type a key part given without one is read as: the declared type,
    /// else S.
    pub fn pk_type(&self) -> KeyType {
        self.pk.unwrap_or(KeyType::S)
    }

    /// As [`KeySchema::pk_type`], for the sort key.
    pub fn sk_type(&self) -> KeyType {
        match self.sk {
            SortKeyRule::Required(t) => t,
            _ => KeyType::S,
        }
    }

    /// The stored bytes of a key part.
    pub fn encode(&self, a: &KeyAttr) -> Result<Vec<u8>> {
        match (self.encoding, a) {
            (KeyEncoding::Typed, a) => Ok(a.to_stored()),
            (KeyEncoding::Bytes, KeyAttr::S(s)) => Ok(s.as_bytes().to_vec()),
            (KeyEncoding::Bytes, KeyAttr::B(b)) => Ok(b.clone()),
            (KeyEncoding::Bytes, KeyAttr::N(_)) => Err(Error::InvalidInput(
                "this database has untyped (byte) keys, created before typed keys: N keys need a \
                 database created with typed keys (export it and import into one made by `kstone create`; \
                 `import --skip-invalid` lists what a typed database refuses)"
                    .into(),
            )),
        }
    }

    /// A key part from its stored bytes.
    pub fn decode(&self, b: &[u8]) -> Result<KeyAttr> {
        match self.encoding {
            KeyEncoding::Typed => KeyAttr::from_stored(b),
            KeyEncoding::Bytes => Ok(KeyAttr::from_untyped(b)),
        }
    }

    /// Would a put of this key be accepted: parts decodable, types as
    /// declared, sort key present or absent as declared, no empty S or B
    /// sort key (DynamoDB refuses empty key values).
    pub fn check_put(&self, pk: &[u8], sk: Option<&[u8]>) -> Result<()> {
        self.check_key(pk, sk)?;
        let value_len = |s: &[u8]| match self.encoding {
            KeyEncoding::Typed => KeyAttr::stored_value_len(s),
            _ => s.len(),
        };
        check_lengths(value_len(pk), sk.map(value_len))?;
        let empty = |s: &[u8]| match self.encoding {
            KeyEncoding::Bytes => s.is_empty(),
            KeyEncoding::Typed => KeyAttr::stored_is_empty(s),
        };
        match sk {
            Some(s) if empty(s) => Err(Error::InvalidInput(
                "the sort key is empty: key values must be at least 1 byte".into(),
            )),
            _ => Ok(()),
        }
    }

    /// [`KeySchema::check_put`] without the emptiness rule (a delete may
    /// remove an item a format-1 database accepted with an empty sort key).
    pub fn check_key(&self, pk: &[u8], sk: Option<&[u8]>) -> Result<()> {
        if self.encoding == KeyEncoding::Bytes {
            return Ok(());
        }
        self.check_pk(pk)?;
        match (self.sk, sk) {
            (SortKeyRule::Absent, Some(_)) => Err(Error::InvalidInput(
                "this database's items have no sort key (declared at create)".into(),
            )),
            (SortKeyRule::Required(t), None) => Err(Error::InvalidInput(format!(
                "this database requires a sort key of type {t} (declared at create)"
            ))),
            (SortKeyRule::Required(t), Some(s)) => {
                let got = KeyAttr::stored_type(s)?;
                if got == t {
                    Ok(())
                } else {
                    Err(mismatch("sort", t, got))
                }
            }
            (_, Some(s)) => KeyAttr::stored_type(s).map(|_| ()),
            (_, None) => Ok(()),
        }
    }

    /// Is `pk` a partition key this database can hold (decodable, of the
    /// declared type, not empty)? Queries check their partition key so.
    pub fn check_pk(&self, pk: &[u8]) -> Result<()> {
        if pk.is_empty() || (self.is_typed() && KeyAttr::stored_is_empty(pk)) {
            return Err(Error::InvalidInput(
                "the partition key is empty: key values must be at least 1 byte".into(),
            ));
        }
        if !self.is_typed() {
            return Ok(());
        }
        let p = KeyAttr::stored_type(pk)?;
        match self.pk {
            Some(t) if p != t => Err(mismatch("partition", t, p)),
            _ => Ok(()),
        }
    }

    /// DynamoDB's key limits on typed values (2048 bytes for a partition
    /// key, 1024 for a sort key, a partition key not empty), with the
    /// messages a stored key gets from [`KeySchema::check_put`].
    pub fn check_values(&self, pk: &KeyAttr, sk: Option<&KeyAttr>) -> Result<()> {
        let len = |a: &KeyAttr| match a {
            KeyAttr::S(s) => s.len(),
            KeyAttr::B(b) => b.len(),
            KeyAttr::N(_) => 1,
        };
        if pk.is_empty() {
            return Err(Error::InvalidInput(
                "the partition key is empty: key values must be at least 1 byte".into(),
            ));
        }
        check_lengths(len(pk), sk.map(len))
    }

    /// A typed sort-key condition as the engine's byte condition. In a typed
    /// database a condition only matches sort keys of its own type, as in
    /// DynamoDB.
    pub fn condition(&self, c: &TypedCondition) -> Result<SortKeyCondition> {
        use SortKeyCondition as C;
        use TypedCondition as T;
        let enc = |a: &KeyAttr| self.encode(a);
        if self.sk == SortKeyRule::Absent {
            return Err(Error::InvalidInput(
                "this database's items have no sort key (declared at create): a sort-key condition matches nothing".into(),
            ));
        }
        let operands: &[&KeyAttr] = match c {
            T::Between(a, b) => &[a, b],
            T::Eq(x) | T::Lt(x) | T::Le(x) | T::Gt(x) | T::Ge(x) | T::BeginsWith(x) => &[x],
        };
        if operands.iter().any(|a| a.is_empty()) {
            return Err(Error::InvalidInput(
                "a sort-key condition's value is empty: key values must be at least 1 byte".into(),
            ));
        }
        if !self.is_typed() {
            return Ok(match c {
                T::Eq(x) => C::Eq(enc(x)?),
                T::Lt(x) => C::Lt(enc(x)?),
                T::Le(x) => C::Le(enc(x)?),
                T::Gt(x) => C::Gt(enc(x)?),
                T::Ge(x) => C::Ge(enc(x)?),
                T::Between(a, b) => C::Between(enc(a)?, enc(b)?),
                T::BeginsWith(p) => C::BeginsWith(enc(p)?),
            });
        }
        if let SortKeyRule::Required(t) = self.sk {
            if c.key_type() != t {
                return Err(mismatch("sort", t, c.key_type()));
            }
        }
        let (lo, hi) = c.key_type().stored_range();
        Ok(match c {
            T::Eq(x) => C::Eq(enc(x)?),
            T::Lt(x) => C::Range(lo, Bound::Excluded(enc(x)?)),
            T::Le(x) => C::Range(lo, Bound::Included(enc(x)?)),
            T::Gt(x) => C::Range(Bound::Excluded(enc(x)?), hi),
            T::Ge(x) => C::Range(Bound::Included(enc(x)?), hi),
            T::Between(a, b) => {
                if a.key_type() != b.key_type() {
                    return Err(Error::InvalidInput(format!(
                        "between: the bounds have different types ({} and {})",
                        a.key_type(),
                        b.key_type()
                    )));
                }
                C::Between(enc(a)?, enc(b)?)
            }
            T::BeginsWith(p) => {
                if p.key_type() == KeyType::N {
                    return Err(Error::InvalidInput(
                        "begins_with works on S and B sort keys, not N".into(),
                    ));
                }
                C::BeginsWith(enc(p)?)
            }
        })
    }
}

impl Default for KeySchema {
    /// Byte keys, what a database without a recorded schema has.
    fn default() -> KeySchema {
        KeySchema::bytes()
    }
}

impl std::fmt::Display for KeySchema {
    /// `pk S, sk N`, `pk any type, sk optional`, or `bytes (…)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.is_typed() {
            return f.write_str("untyped bytes (format 1: shown as S when UTF-8, else B; no N)");
        }
        match self.pk {
            Some(t) => write!(f, "pk {t}")?,
            None => f.write_str("pk any type")?,
        }
        match self.sk {
            SortKeyRule::Required(t) => write!(f, ", sk {t}"),
            SortKeyRule::Absent => f.write_str(", no sk"),
            SortKeyRule::Optional => f.write_str(", sk optional (any type)"),
        }
    }
}

/// DynamoDB's limits on key value lengths (2048 and 1024 bytes), one
/// wording whether the values are typed or stored.
fn check_lengths(pk: usize, sk: Option<usize>) -> Result<()> {
    if pk > MAX_PK_BYTES {
        return Err(Error::InvalidInput(format!(
            "partition key is {pk} bytes; the limit is {MAX_PK_BYTES}"
        )));
    }
    match sk {
        Some(s) if s > MAX_SK_BYTES => Err(Error::InvalidInput(format!(
            "sort key is {s} bytes; the limit is {MAX_SK_BYTES}"
        ))),
        _ => Ok(()),
    }
}

fn mismatch(which: &str, want: KeyType, got: KeyType) -> Error {
    Error::InvalidInput(format!(
        "the {which} key is {got}, but this database's {which} key type is {want}"
    ))
}

/// A sort-key condition on typed values (DynamoDB's seven operators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedCondition {
    Eq(KeyAttr),
    Lt(KeyAttr),
    Le(KeyAttr),
    Gt(KeyAttr),
    Ge(KeyAttr),
    /// Both ends inclusive.
    Between(KeyAttr, KeyAttr),
    BeginsWith(KeyAttr),
}

impl TypedCondition {
    /// The type of the condition's operand(s).
    pub fn key_type(&self) -> KeyType {
        match self {
            TypedCondition::Eq(x)
            | TypedCondition::Lt(x)
            | TypedCondition::Le(x)
            | TypedCondition::Gt(x)
            | TypedCondition::Ge(x)
            | TypedCondition::Between(x, _)
            | TypedCondition::BeginsWith(x) => x.key_type(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::number::Number;

    fn n(s: &str) -> KeyAttr {
        KeyAttr::N(Number::parse(s).unwrap())
    }

    #[test]
    fn declared_types_are_enforced() {
        let s = KeySchema::typed(Some(KeyType::N), SortKeyRule::Absent);
        let pk = s.encode(&n("5")).unwrap();
        assert!(s.check_put(&pk, None).is_ok());
        assert!(s.check_put(b"5", None).is_err());
        assert!(s.check_put(&pk, Some(b"x")).is_err());
        let any = KeySchema::typed(None, SortKeyRule::Optional);
        assert!(any.check_put(b"p", Some(b"")).is_err());
        assert!(any.check_key(b"p", Some(b"")).is_ok());
        assert!(any.check_put(b"p", Some(&[0xff])).is_err()); // empty B
        assert!(any.check_put(&[0xff], None).is_err());
        assert!(any.check_put(&[0xc3, 0x28], None).is_err()); // not UTF-8, no type mark
        assert!(KeySchema::bytes().check_put(&[0xc3, 0x28], None).is_ok());
        assert!(KeySchema::bytes().encode(&n("1")).is_err());
    }

    #[test]
    fn conditions_stay_within_their_type() {
        let s = KeySchema::typed(None, SortKeyRule::Optional);
        let c = s.condition(&TypedCondition::Gt(n("-3"))).unwrap();
        for (sk, want) in [
            (n("-2"), true),
            (n("10"), true),
            (n("-3"), false),
            (n("-10"), false),
            (KeyAttr::B(vec![1]), false),
            (KeyAttr::S("z".into()), false),
        ] {
            assert_eq!(c.matches(Some(&sk.to_stored())), want, "{sk:?}");
        }
        for empty in [KeyAttr::S(String::new()), KeyAttr::B(Vec::new())] {
            assert!(s
                .condition(&TypedCondition::BeginsWith(empty.clone()))
                .is_err());
            assert!(s.condition(&TypedCondition::Ge(empty)).is_err());
        }
        let none = KeySchema::typed(None, SortKeyRule::Absent);
        assert!(none.condition(&TypedCondition::Eq(n("1"))).is_err());
        let c = s
            .condition(&TypedCondition::Lt(KeyAttr::S("b".into())))
            .unwrap();
        assert!(c.matches(Some(b"a")));
        assert!(!c.matches(Some(&n("1").to_stored())));
        assert!(s.condition(&TypedCondition::BeginsWith(n("1"))).is_err());
        assert!(s
            .condition(&TypedCondition::Between(n("1"), KeyAttr::S("2".into())))
            .is_err());
        let req = KeySchema::typed(None, SortKeyRule::Required(KeyType::N));
        assert!(req
            .condition(&TypedCondition::Eq(KeyAttr::S("1".into())))
            .is_err());
    }
}
