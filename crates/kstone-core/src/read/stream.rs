//! Streaming every live item of a stripe, newest version of each key, with
//! entries lent from the sources (memtable copies and table blocks) rather
//! than allocated one by one: the path of [`Database::for_each_item`]. The
//! paginated [`Database::scan`] keeps its own path ([`super::range::Merge`]),
//! which resumes from a key.

use std::cmp::Ordering;

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::sst::cursor::{EntryRef, TableCursor};
use crate::Database;

/// One sorted source of a stripe.
enum Source {
    /// A memtable's entries, copied under the stripe lock, and the position.
    Mem(Vec<Entry>, usize),
    Table(TableCursor),
}

impl Source {
    fn head(&self) -> Option<EntryRef<'_>> {
        match self {
            Source::Mem(v, i) => v.get(*i).map(|e| EntryRef {
                key: e.key.as_key_ref(),
                lsn: e.lsn,
                value: e.value.as_deref(),
            }),
            Source::Table(c) => c.head(),
        }
    }

    fn advance(&mut self) -> Result<()> {
        match self {
            Source::Mem(_, i) => {
                *i += 1;
                Ok(())
            }
            Source::Table(c) => c.advance(),
        }
    }
}

impl Database {
    /// Call `f` with the newest version of every live key of `stripe`, in
    /// key order (tombstones are skipped). The view is the stripe's state
    /// when this starts; writes go on meanwhile.
    pub(crate) fn stream_stripe<E: From<Error>>(
        &self,
        stripe: usize,
        mut f: impl FnMut(EntryRef<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let (mems, tables) = {
            let st = self.stripe_state(stripe);
            let all = crate::read::range::KeyRange::all();
            let mems: Vec<Vec<Entry>> = std::iter::once(&st.mem)
                .chain(st.sealed.iter().map(|s| &s.mem))
                .map(|m| m.range(&all, false))
                .filter(|v| !v.is_empty())
                .collect();
            (mems, st.tables.clone())
        };
        let mut sources: Vec<Source> = mems.into_iter().map(|v| Source::Mem(v, 0)).collect();
        for t in tables {
            sources.push(Source::Table(TableCursor::new(t)?));
        }
        // Sources holding the smallest key (a stripe has a handful: a linear
        // pass beats a heap).
        let mut same: Vec<usize> = Vec::with_capacity(sources.len());
        loop {
            same.clear();
            let mut best: Option<(usize, EntryRef<'_>)> = None;
            for (i, s) in sources.iter().enumerate() {
                let Some(h) = s.head() else { continue };
                match best.as_ref().map(|(_, b)| h.key.cmp(&b.key)) {
                    None | Some(Ordering::Less) => {
                        same.clear();
                        same.push(i);
                        best = Some((i, h));
                    }
                    Some(Ordering::Equal) => {
                        same.push(i);
                        if best.as_ref().is_some_and(|(_, b)| h.lsn > b.lsn) {
                            best = Some((i, h));
                        }
                    }
                    Some(Ordering::Greater) => {}
                }
            }
            let Some((_, newest)) = best else {
                return Ok(());
            };
            if newest.value.is_some() {
                f(newest)?;
            }
            for &i in &same {
                sources[i].advance()?;
            }
        }
    }
}
