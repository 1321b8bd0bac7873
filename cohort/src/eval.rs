//! Evaluation of a [`CohortPlan`].
//!
//! Every step of Circe's generated SQL is a join or window partitioned by
//! person, so a cohort can be evaluated one person at a time. Persons are
//! split into chunks of consecutive person indexes, and the chunks are
//! evaluated in parallel with rayon. Within a chunk:
//!
//! 1. the rows of each primary criteria are *gathered*: the clusters of its
//!    concept set (see [`EventTable`]) are cut to the chunk's persons and
//!    merged into one list per person, in time order, and the criteria's
//!    filters turn them into [`CRow`]s;
//! 2. each person with such rows gets its entry events;
//! 3. the rows of every other criteria (additional criteria, inclusion rules,
//!    censoring, nested correlated criteria) are gathered the same way, for
//!    the persons with entry events only;
//! 4. each of those persons is evaluated over its slices of these rows.
//!
//! So only the rows of the concepts a definition names are read, front to
//! back. Results are joined in chunk order, so the output does not depend on
//! thread scheduling.

use crate::cdm::{Cdm, Day, Domain, EventTable, Extra, Matcher, NULL_DAY, NULL_ID, prefetch};
use crate::plan::{
    Bound, CohortPlan, CorrelatedPlan, CountColumn, CriteriaPlan, DateCol, DemographicPlan,
    EndPlan, EndRule, Filter, GroupPlan, GroupRule, IdCol, Limit, NumCol, WindowPlan,
};
use crate::{CohortRow, Partial};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// One row of a criteria query: an event with its Circe dates.
#[derive(Debug, Clone, Copy)]
struct CRow {
    event_id: i64,
    start: Day,
    end: Day,
    visit: i64,
    sort: Day,
    /// Distinct-count key (domain concept), [`NULL_ID`] for null.
    concept: i64,
}

/// An index event: a primary / qualified event with its observation period.
#[derive(Debug, Clone, Copy)]
pub struct IndexEvent {
    /// Event id (the ordinal for entry events).
    pub event_id: i64,
    /// Start date.
    pub start: Day,
    /// End date.
    pub end: Day,
    /// Observation period start.
    pub op_start: Day,
    /// Observation period end.
    pub op_end: Day,
    /// visit_occurrence_id.
    pub visit: i64,
}

#[inline]
fn add_days(d: Day, n: i32) -> Day {
    if d == NULL_DAY {
        NULL_DAY
    } else {
        d.saturating_add(n)
    }
}

#[inline]
fn ge(a: Day, b: Day) -> bool {
    a != NULL_DAY && b != NULL_DAY && a >= b
}

#[inline]
fn le(a: Day, b: Day) -> bool {
    a != NULL_DAY && b != NULL_DAY && a <= b
}

/// The calendar year of a day number (proleptic Gregorian).
pub fn year_of(day: Day) -> i64 {
    // Howard Hinnant's civil_from_days.
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    if m <= 2 { y + 1 } else { y }
}

/// Persons per chunk: enough chunks to keep both cores busy, few enough that
/// cutting every cluster of a large concept set to a chunk stays cheap.
fn chunk_size(persons: usize) -> usize {
    (persons / 64).clamp(2048, 16_384)
}

/// Evaluates a compiled plan over every person of `cdm`.
pub(crate) fn run(cdm: &Cdm, plan: &CohortPlan) -> Partial {
    let n = cdm.person_count();
    let size = chunk_size(n);
    let chunks: Vec<(u32, u32)> = (0..n)
        .step_by(size)
        .map(|lo| (lo as u32, (lo + size).min(n) as u32))
        .collect();
    let ev = Evaluator { cdm, plan };
    let parts: Vec<Partial> = chunks
        .par_iter()
        .map(|&(lo, hi)| ev.chunk(lo, hi))
        .collect();
    let mut out = Partial {
        rows: Vec::with_capacity(parts.iter().map(|p| p.rows.len()).sum()),
        ..Partial::default()
    };
    for p in parts {
        out.rows.extend_from_slice(&p.rows);
        out.event_masks.extend_from_slice(&p.event_masks);
        out.best_masks.extend_from_slice(&p.best_masks);
        out.censored_lost += p.censored_lost;
    }
    out
}

/// A run of rows of one table, in person order: a range of rows, or a list of row numbers.
#[derive(Clone, Copy)]
enum Run<'t> {
    Range(usize, usize),
    List(&'t [u32]),
}

impl Run<'_> {
    #[inline]
    fn len(&self) -> usize {
        match self {
            Run::Range(a, b) => b - a,
            Run::List(l) => l.len(),
        }
    }

    #[inline]
    fn row(&self, i: usize) -> usize {
        match self {
            Run::Range(a, _) => a + i,
            Run::List(l) => l[i] as usize,
        }
    }

    /// The part of the run whose persons lie in `lo..hi`.
    fn persons_in(self, t: &EventTable, lo: u32, hi: u32) -> Self {
        match self {
            Run::Range(a, b) => {
                let r = t.persons_in(a..b, lo, hi);
                Run::Range(r.start, r.end)
            }
            Run::List(l) => {
                let a = l.partition_point(|&r| t.person[r as usize] < lo);
                let b = a + l[a..].partition_point(|&r| t.person[r as usize] < hi);
                Run::List(&l[a..b])
            }
        }
    }
}

/// Which rows of a run qualify beyond their cluster.
#[derive(Clone, Copy)]
enum Pred<'p> {
    /// Every row.
    All,
    /// The source concept matches.
    Source(&'p Matcher),
    /// The source concept matches and equals the cluster's concept (the rows
    /// whose source differs are found through the table's source index).
    SourceIsConcept(&'p Matcher, i64),
}

/// Rows gathered for the persons of a chunk: `rows[starts[i]..starts[i + 1]]`
/// are (row, cluster) of person `persons[i]`, in start date and id order.
#[derive(Default)]
struct Gathered {
    persons: Vec<u32>,
    starts: Vec<u32>,
    rows: Vec<(u32, u32)>,
}

impl Gathered {
    /// Closes the group of the person whose rows were pushed last (if any).
    #[inline]
    fn close(&mut self, person: u32, from: usize) {
        if self.rows.len() > from {
            self.persons.push(person);
            self.starts.push(self.rows.len() as u32);
        }
    }
}

/// Gathers the rows of `runs` (each with its cluster and predicate) for persons
/// `lo..lo + n`, only those marked in `allowed` when it is given.
fn gather(
    t: &EventTable,
    runs: &[(Run<'_>, u32, Pred<'_>)],
    lo: u32,
    n: usize,
    allowed: Option<&[bool]>,
) -> Gathered {
    let hi = lo + n as u32;
    let runs: Vec<(Run<'_>, u32, Pred<'_>)> = runs
        .iter()
        .map(|&(r, c, p)| (r.persons_in(t, lo, hi), c, p))
        .filter(|(r, _, _)| r.len() > 0)
        .collect();
    let keep = |r: usize, pred: Pred<'_>| -> bool {
        if let Some(a) = allowed
            && !a[(t.person[r] - lo) as usize]
        {
            return false;
        }
        match pred {
            Pred::All => true,
            Pred::Source(m) => m.test(&t.source, r),
            Pred::SourceIsConcept(m, c) => t.source.get(r) == c && m.test(&t.source, r),
        }
    };
    let mut g = Gathered {
        starts: vec![0],
        rows: Vec::with_capacity(runs.iter().map(|(r, _, _)| r.len()).sum()),
        ..Gathered::default()
    };
    if runs.len() == 1 {
        // One run is already in person, start and id order.
        let (run, c, pred) = runs[0];
        let mut current = u32::MAX;
        let mut from = 0;
        for i in 0..run.len() {
            let r = run.row(i);
            if keep(r, pred) {
                let p = t.person[r];
                if p != current {
                    if current != u32::MAX {
                        g.close(current, from);
                    }
                    current = p;
                    from = g.rows.len();
                }
                g.rows.push((r as u32, c));
            }
        }
        if current != u32::MAX {
            g.close(current, from);
        }
        return g;
    }
    if runs.len() <= 8 {
        // A few runs: merge them person by person (each is in person, start and
        // id order); a person with rows from several runs gets its rows ordered
        // by start date and id.
        let mut heads: Vec<usize> = vec![0; runs.len()];
        let mut next_of: Vec<u32> = runs
            .iter()
            .map(|(run, _, _)| t.person[run.row(0)])
            .collect();
        loop {
            let next = next_of.iter().copied().min().unwrap_or(u32::MAX);
            if next == u32::MAX {
                break;
            }
            let from = g.rows.len();
            let mut sources = 0;
            for (k, &(run, c, pred)) in runs.iter().enumerate() {
                if next_of[k] != next {
                    continue;
                }
                let before = g.rows.len();
                let mut i = heads[k];
                while i < run.len() {
                    let r = run.row(i);
                    let p = t.person[r];
                    if p != next {
                        next_of[k] = p;
                        break;
                    }
                    if keep(r, pred) {
                        g.rows.push((r as u32, c));
                    }
                    i += 1;
                }
                if i == run.len() {
                    next_of[k] = u32::MAX;
                }
                heads[k] = i;
                sources += usize::from(g.rows.len() > before);
            }
            if sources > 1 {
                g.rows[from..]
                    .sort_by_key(|&(r, _)| (t.start.get(r as usize), t.id.get(r as usize)));
            }
            g.close(next, from);
        }
        return g;
    }
    // Several runs: a counting sort by person, with per-thread arrays over the
    // chunk's persons (only the entries touched are reset), and bitsets of the
    // persons seen and of those with rows from more than one run.
    GATHER.with_borrow_mut(|sc| {
        if sc.count.len() < n {
            sc.count.resize(n, 0);
            sc.last_run.resize(n, u32::MAX);
        }
        let words = n.div_ceil(64);
        let mut seen = vec![0u64; words];
        let mut mixed = vec![0u64; words];
        for (k, &(run, _, pred)) in runs.iter().enumerate() {
            for i in 0..run.len() {
                let r = run.row(i);
                if keep(r, pred) {
                    let p = (t.person[r] - lo) as usize;
                    sc.count[p] += 1;
                    seen[p / 64] |= 1 << (p % 64);
                    if sc.last_run[p] != k as u32 {
                        if sc.last_run[p] != u32::MAX {
                            mixed[p / 64] |= 1 << (p % 64);
                        }
                        sc.last_run[p] = k as u32;
                    }
                }
            }
        }
        // Persons in order, their row ranges; `count` becomes each one's fill position.
        let mut total = 0u32;
        for (w, &bits) in seen.iter().enumerate() {
            let mut b = bits;
            while b != 0 {
                let p = w * 64 + b.trailing_zeros() as usize;
                b &= b - 1;
                let c = sc.count[p];
                sc.count[p] = total;
                total += c;
                g.persons.push(lo + p as u32);
                g.starts.push(total);
            }
        }
        g.rows = vec![(0u32, 0u32); total as usize];
        for &(run, c, pred) in &runs {
            for i in 0..run.len() {
                let r = run.row(i);
                if keep(r, pred) {
                    let p = (t.person[r] - lo) as usize;
                    g.rows[sc.count[p] as usize] = (r as u32, c);
                    sc.count[p] += 1;
                }
            }
        }
        for (k, &p) in g.persons.iter().enumerate() {
            let i = (p - lo) as usize;
            sc.count[i] = 0;
            sc.last_run[i] = u32::MAX;
            if mixed[i / 64] & (1 << (i % 64)) != 0 {
                let seg = &mut g.rows[g.starts[k] as usize..g.starts[k + 1] as usize];
                // Stable: rows of equal start and id keep their cluster order.
                seg.sort_by_key(|&(r, _)| (t.start.get(r as usize), t.id.get(r as usize)));
            }
        }
    });
    g
}

/// Per-thread arrays of [`gather`]'s counting sort, all zero (`u32::MAX` for
/// `last_run`) between calls.
#[derive(Default)]
struct GatherScratch {
    count: Vec<u32>,
    last_run: Vec<u32>,
}

thread_local! {
    static GATHER: std::cell::RefCell<GatherScratch> = std::cell::RefCell::new(GatherScratch::default());
}

/// Rows grouped by person, for the persons of a chunk that have any:
/// `rows[starts[i]..starts[i + 1]]` belong to person `persons[i]`.
/// Persons are looked up in ascending order, so a cursor finds them.
struct Grouped<T> {
    persons: Vec<u32>,
    starts: Vec<u32>,
    rows: Vec<T>,
    cursor: std::cell::Cell<usize>,
}

impl<T> Default for Grouped<T> {
    fn default() -> Self {
        Self {
            persons: Vec::new(),
            starts: vec![0],
            rows: Vec::new(),
            cursor: std::cell::Cell::new(0),
        }
    }
}

impl<T> Grouped<T> {
    /// The rows of person `p`.
    #[inline]
    fn of(&self, p: u32) -> &[T] {
        let mut c = self.cursor.get();
        if c > 0 && self.persons.get(c - 1).is_some_and(|&q| q >= p) {
            c = self.persons.partition_point(|&q| q < p);
        }
        while c < self.persons.len() && self.persons[c] < p {
            c += 1;
        }
        self.cursor.set(c);
        if c < self.persons.len() && self.persons[c] == p {
            &self.rows[self.starts[c] as usize..self.starts[c + 1] as usize]
        } else {
            &[]
        }
    }

    /// Appends person `p`'s rows (pushed onto `rows` since position `from`).
    #[inline]
    fn close(&mut self, p: u32, from: usize) {
        if self.rows.len() > from {
            self.persons.push(p);
            self.starts.push(self.rows.len() as u32);
        }
    }
}

/// Buffers reused from person to person.
#[derive(Default)]
struct Scratch {
    cands: Vec<(CRow, Day, Day)>,
    qualified: Vec<IndexEvent>,
    masks: Vec<u64>,
    ends: Vec<(Day, Day)>,
    episodes: Vec<(Day, Day)>,
    spans: Vec<(Day, Day)>,
    eras: Vec<(Day, Day)>,
}

/// What is known about one chunk of persons while it is evaluated.
struct Chunk {
    lo: u32,
    n: usize,
    /// Gathered rows of each criteria, by [`CriteriaPlan::slot`].
    batches: Vec<Grouped<CRow>>,
    /// Per person, (visit_occurrence_id, visit_concept_id) of every visit, for
    /// criteria that join their visit.
    visits: Option<Grouped<(i64, i64)>>,
    /// Custom era spans (start, end) per person, for the custom era end strategy.
    spans: Option<Grouped<(Day, Day)>>,
}

impl Chunk {
    #[inline]
    fn rows(&self, slot: usize, p: usize) -> &[CRow] {
        match self.batches.get(slot) {
            Some(b) => b.of(p as u32),
            None => &[],
        }
    }
}

/// Evaluates one compiled cohort over one CDM.
struct Evaluator<'a> {
    cdm: &'a Cdm,
    plan: &'a CohortPlan,
}

struct RowCtx<'t> {
    t: &'t EventTable,
    r: usize,
    concept: i64,
    start: Day,
    end: Day,
    visit_concept: i64,
    place_of_service: i64,
}

impl<'a> Evaluator<'a> {
    /// Evaluates the persons `lo..hi`.
    fn chunk(&self, lo: u32, hi: u32) -> Partial {
        let plan = self.plan;
        let n = (hi - lo) as usize;
        let mut ch = Chunk {
            lo,
            n,
            batches: (0..plan.slots).map(|_| Grouped::default()).collect(),
            visits: None,
            spans: None,
        };
        let mut part = Partial::default();
        // Primary criteria are read once, person by person, so their rows are
        // gathered but turned into criteria rows only as each person comes up;
        // a primary criteria with nested criteria is built whole, since those
        // need its persons first.
        let mut streams: Vec<Option<Gathered>> = Vec::with_capacity(plan.primary.len());
        for c in &plan.primary {
            if c.correlated.is_some() {
                self.build(&mut ch, c, None);
                streams.push(None);
            } else {
                let t = self.cdm.table(c.domain);
                if c.needs_visit && ch.visits.is_none() {
                    ch.visits = Some(self.visits(lo, n));
                }
                streams.push(Some(gather(t, &self.runs(t, c), lo, n, None)));
            }
        }
        // The persons with a primary row, ascending.
        let mut candidates: Vec<u32> = Vec::new();
        for (c, stream) in plan.primary.iter().zip(&streams) {
            match stream {
                Some(g) => candidates.extend_from_slice(&g.persons),
                None => candidates.extend_from_slice(&ch.batches[c.slot].persons),
            }
        }
        if plan.primary.len() > 1 {
            candidates.sort_unstable();
            candidates.dedup();
        }
        // Their ids and observation periods, read in one tight loop so that the
        // cache misses of consecutive persons overlap.
        let ops = self.cdm.table(Domain::ObservationPeriod);
        let core = &self.cdm.core;
        let mut periods: Vec<(Day, Day)> = Vec::with_capacity(candidates.len() * 2);
        let mut period_ends: Vec<u32> = Vec::with_capacity(candidates.len());
        let mut ids: Vec<i64> = Vec::with_capacity(candidates.len());
        for (k, &p) in candidates.iter().enumerate() {
            if let Some(&q) = candidates.get(k + 16) {
                prefetch(core, q as usize);
            }
            let c = &core[p as usize];
            if c.n_periods <= 2 {
                periods.extend_from_slice(&c.periods[..c.n_periods as usize]);
            } else {
                for o in ops.rows(p as usize) {
                    periods.push((ops.start.get(o), ops.end.get(o)));
                }
            }
            period_ends.push(periods.len() as u32);
            ids.push(c.id);
        }
        // A plan that reads nothing but its entry events evaluates each person
        // right away; otherwise the entry events are kept until the other
        // criteria are gathered for the persons that have them.
        let at_once = plan.additional.is_none()
            && plan.rules.is_empty()
            && plan.censoring.is_empty()
            && !matches!(plan.end, EndPlan::CustomEra { .. });
        // Evaluated at once and numbered as they come (see `primary_events`), the
        // entry events' ids and visits are never read.
        let lean = at_once
            && plan.primary.len() == 1
            && plan.primary[0].date_adjustment.is_none()
            && plan.primary_limit != Limit::Last;
        let mut scratch = Scratch::default();
        let mut rows: Vec<Vec<CRow>> = vec![Vec::new(); plan.primary.len()];
        let mut cursors = vec![0usize; plan.primary.len()];
        let mut events: Grouped<IndexEvent> = Grouped::default();
        let mut event_ids: Vec<i64> = Vec::new();
        let mut has_events = vec![false; n];
        let mut period_start = 0usize;
        if at_once {
            part.rows.reserve(candidates.len());
        }
        // One streamed criteria in entry order: its persons are the candidates.
        let single = match (plan.primary.as_slice(), streams.as_slice()) {
            ([c], [Some(g)])
                if c.date_adjustment.is_none() && plan.primary_limit != Limit::Last =>
            {
                Some((c, g))
            }
            _ => None,
        };
        // ... and when nothing else is read, every step of a person's evaluation
        // can run as its rows come (see `entry_spans`).
        let fused = at_once
            && single.is_some()
            && plan.expression_limit != Limit::Last
            && plan.era_pad >= 0;
        for (k, &p) in candidates.iter().enumerate() {
            let mine = &periods[period_start..period_ends[k] as usize];
            period_start = period_ends[k] as usize;
            if fused && let Some((c, g)) = single {
                let seg = &g.rows[g.starts[k] as usize..g.starts[k + 1] as usize];
                self.entry_spans(
                    &ch,
                    c,
                    p,
                    ids[k],
                    seg,
                    mine,
                    &mut scratch.episodes,
                    &mut part,
                );
                continue;
            }
            let from = events.rows.len();
            if let Some((c, g)) = single {
                let seg = &g.rows[g.starts[k] as usize..g.starts[k + 1] as usize];
                self.entry_events(&ch, c, p, seg, lean, mine, &mut events.rows);
            } else {
                self.candidate_events(
                    &ch,
                    p,
                    &streams,
                    &mut cursors,
                    lean,
                    mine,
                    &mut rows,
                    &mut scratch.cands,
                    &mut events.rows,
                );
            }
            if events.rows.len() == from {
                continue;
            }
            if at_once {
                let evs = std::mem::take(&mut events.rows);
                self.person(&ch, p as usize, ids[k], &evs, &mut scratch, &mut part);
                events.rows = evs;
                events.rows.clear();
            } else {
                events.close(p, from);
                event_ids.push(ids[k]);
                has_events[(p - lo) as usize] = true;
            }
        }
        drop((candidates, periods, streams, rows, ids));
        if !at_once {
            if events.persons.is_empty() {
                return part;
            }
            // Everything else is gathered for the persons with entry events only.
            if let Some(g) = &plan.additional {
                self.build_group(&mut ch, g, Some(&has_events));
            }
            for g in &plan.rules {
                self.build_group(&mut ch, g, Some(&has_events));
            }
            for c in &plan.censoring {
                self.build(&mut ch, c, Some(&has_events));
            }
            if let EndPlan::CustomEra {
                drugs,
                clusters,
                days_supply,
                ..
            } = &plan.end
            {
                ch.spans =
                    Some(self.custom_era_spans(&ch, drugs, clusters, *days_supply, &has_events));
            }
            part.rows.reserve(events.persons.len());
            for (i, &p) in events.persons.iter().enumerate() {
                let evs = &events.rows[events.starts[i] as usize..events.starts[i + 1] as usize];
                self.person(&ch, p as usize, event_ids[i], evs, &mut scratch, &mut part);
            }
        }
        part
    }

    /// Whether an event starting on `start` lies in the observation period
    /// (`os`, `oe`) with the observation window around it.
    #[inline]
    fn in_window(&self, start: Day, os: Day, oe: Day) -> bool {
        let plan = self.plan;
        le(os, start)
            && ge(oe, start)
            && le(add_days(os, plan.prior_days), start)
            && le(add_days(start, plan.post_days), oe)
    }

    /// Calls `f` with each of person `p`'s rows `seg` of the primary criteria
    /// `cp` (in entry order) and each observation period it lies in with the
    /// observation window, until `f` returns true; reads one row only when the
    /// criteria takes the first event. The walk both entry paths share.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn entries_in_window(
        &self,
        ch: &Chunk,
        cp: &CriteriaPlan,
        p: u32,
        seg: &[(u32, u32)],
        lean: bool,
        periods: &[(Day, Day)],
        mut f: impl FnMut(&CRow, Day, Day) -> bool,
    ) {
        if cp.needs_person && !self.cdm.persons.in_person_table[p as usize] {
            return;
        }
        let t = self.cdm.table(cp.domain);
        let visits = ch.visits.as_ref().map(|v| v.of(p));
        for &(r, c) in seg {
            let row = self.row(
                cp,
                r as usize,
                t.clusters[c as usize],
                p as usize,
                visits,
                lean,
            );
            if let Some(row) = row {
                for &(os, oe) in periods {
                    if self.in_window(row.start, os, oe) && f(&row, os, oe) {
                        return;
                    }
                }
            }
            if cp.first {
                break;
            }
        }
    }

    /// Appends person `p`'s entry events made from its gathered rows `seg` of
    /// the one primary criteria `cp` (in entry order, so events are numbered
    /// as they come); `periods` are the person's observation periods.
    #[allow(clippy::too_many_arguments)]
    fn entry_events(
        &self,
        ch: &Chunk,
        cp: &CriteriaPlan,
        p: u32,
        seg: &[(u32, u32)],
        lean: bool,
        periods: &[(Day, Day)],
        out: &mut Vec<IndexEvent>,
    ) {
        let from = out.len();
        let first_only = self.plan.primary_limit == Limit::First;
        self.entries_in_window(ch, cp, p, seg, lean, periods, |r, os, oe| {
            out.push(IndexEvent {
                event_id: (out.len() - from) as i64 + 1,
                start: r.start,
                end: r.end,
                op_start: os,
                op_end: oe,
                visit: r.visit,
            });
            first_only
        });
    }

    /// Evaluates person `p` (id `subject_id`) of a plan whose only criteria is
    /// one primary criteria read in entry order, with no additional criteria,
    /// inclusion rules, censoring or custom eras, a first-or-all expression
    /// limit and a padding of at least zero: each entry event's end is found
    /// and folded into the eras as the rows come, without keeping the events.
    /// (Events arrive by start date; spans of equal start merge whatever their
    /// order when the padding is not negative, so this equals sorting first.)
    #[allow(clippy::too_many_arguments)]
    fn entry_spans(
        &self,
        ch: &Chunk,
        cp: &CriteriaPlan,
        p: u32,
        subject_id: i64,
        seg: &[(u32, u32)],
        periods: &[(Day, Day)],
        episodes: &mut Vec<(Day, Day)>,
        part: &mut Partial,
    ) {
        let plan = self.plan;
        let first_only =
            plan.primary_limit == Limit::First || plan.expression_limit == Limit::First;
        let mut eras = EraBuilder::new(plan.era_pad, plan.era_pad);
        episodes.clear();
        let mut any = false;
        self.entries_in_window(ch, cp, p, seg, true, periods, |row, op_start, op_end| {
            any = true;
            let e = IndexEvent {
                event_id: 0,
                start: row.start,
                end: row.end,
                op_start,
                op_end,
                visit: NULL_ID,
            };
            if let Some(end) = self.strategy_end(&e, &[]) {
                eras.push(row.start, end, episodes);
            }
            first_only
        });
        if any {
            eras.finish(episodes);
            self.emit(subject_id, episodes, part);
        }
    }

    /// Appends person `p`'s entry events from the rows of every primary
    /// criteria (streamed ones advance their cursor; built ones are looked
    /// up); `rows` and `cands` are buffers.
    #[allow(clippy::too_many_arguments)]
    fn candidate_events(
        &self,
        ch: &Chunk,
        p: u32,
        streams: &[Option<Gathered>],
        cursors: &mut [usize],
        lean: bool,
        periods: &[(Day, Day)],
        rows: &mut [Vec<CRow>],
        cands: &mut Vec<(CRow, Day, Day)>,
        out: &mut Vec<IndexEvent>,
    ) {
        for (j, c) in self.plan.primary.iter().enumerate() {
            let mine = &mut rows[j];
            mine.clear();
            match &streams[j] {
                Some(g) => {
                    let cur = &mut cursors[j];
                    while *cur < g.persons.len() && g.persons[*cur] < p {
                        *cur += 1;
                    }
                    if *cur < g.persons.len() && g.persons[*cur] == p {
                        let seg = &g.rows[g.starts[*cur] as usize..g.starts[*cur + 1] as usize];
                        self.criteria_rows(ch, c, p, seg, lean, mine);
                    }
                }
                None => mine.extend_from_slice(ch.rows(c.slot, p as usize)),
            }
        }
        self.primary_events(rows, periods, cands, out);
    }

    /// The runs of rows a criteria reads: the clusters of its concept set, or
    /// for a source concept set alone, the rows of each source concept.
    fn runs<'t>(&self, t: &'t EventTable, cp: &'t CriteriaPlan) -> Vec<(Run<'t>, u32, Pred<'t>)> {
        let source_pred = cp.source_match.as_ref().map_or(Pred::All, Pred::Source);
        match (&cp.clusters, &cp.source_codeset, &cp.source_match) {
            (Some(cl), _, _) => cl
                .iter()
                .map(|&c| {
                    let r = t.cluster(c as usize);
                    (Run::Range(r.start, r.end), c, source_pred)
                })
                .collect(),
            (None, Some(set), Some(m)) => {
                let mut runs = Vec::new();
                for &s in set.iter() {
                    if let Ok(c) = t.clusters.binary_search(&s) {
                        let r = t.cluster(c);
                        runs.push((
                            Run::Range(r.start, r.end),
                            c as u32,
                            Pred::SourceIsConcept(m, s),
                        ));
                    }
                    for (list, c) in t.rows_with_other_source(s) {
                        runs.push((Run::List(list), c, Pred::All));
                    }
                }
                runs
            }
            _ => (0..t.clusters.len())
                .map(|c| {
                    let r = t.cluster(c);
                    (Run::Range(r.start, r.end), c as u32, source_pred)
                })
                .collect(),
        }
    }

    fn build_group(&self, ch: &mut Chunk, g: &GroupPlan, allowed: Option<&[bool]>) {
        for c in &g.criteria {
            self.build(ch, &c.criteria, allowed);
        }
        for s in &g.groups {
            self.build_group(ch, s, allowed);
        }
    }

    /// Gathers the rows of `cp` (and of the criteria nested in it) for the
    /// chunk's persons (those marked in `allowed` when given).
    fn build(&self, ch: &mut Chunk, cp: &CriteriaPlan, allowed: Option<&[bool]>) {
        let t = self.cdm.table(cp.domain);
        let (lo, n) = (ch.lo, ch.n);
        let gathered = gather(t, &self.runs(t, cp), lo, n, allowed);
        if cp.needs_visit && ch.visits.is_none() {
            ch.visits = Some(self.visits(lo, n));
        }
        let mut out: Grouped<CRow> = Grouped {
            rows: Vec::with_capacity(gathered.rows.len()),
            ..Grouped::default()
        };
        for (i, &p) in gathered.persons.iter().enumerate() {
            let from = out.rows.len();
            let seg = &gathered.rows[gathered.starts[i] as usize..gathered.starts[i + 1] as usize];
            self.criteria_rows(ch, cp, p, seg, false, &mut out.rows);
            out.close(p, from);
        }
        drop(gathered);
        if let Some(g) = &cp.correlated {
            // The nested group is tested with this criteria's rows as index events.
            let mut with_rows = vec![false; n];
            for &p in &out.persons {
                with_rows[(p - lo) as usize] = true;
            }
            self.build_group(ch, g, Some(&with_rows));
            let mut kept: Grouped<CRow> = Grouped::default();
            let ops = self.cdm.table(Domain::ObservationPeriod);
            for (i, &p) in out.persons.iter().enumerate() {
                let mine = &out.rows[out.starts[i] as usize..out.starts[i + 1] as usize];
                let mut evs = Vec::new();
                for row in mine {
                    for o in ops.rows(p as usize) {
                        if le(ops.start.get(o), row.start) && ge(ops.end.get(o), row.start) {
                            evs.push(IndexEvent {
                                event_id: row.event_id,
                                start: row.start,
                                end: row.end,
                                op_start: ops.start.get(o),
                                op_end: ops.end.get(o),
                                visit: row.visit,
                            });
                        }
                    }
                }
                let pass = self.group(ch, g, p as usize, &evs);
                let mut ok: Vec<i64> = evs
                    .iter()
                    .zip(&pass)
                    .filter(|(_, ok)| **ok)
                    .map(|(e, _)| e.event_id)
                    .collect();
                ok.sort_unstable();
                let from = kept.rows.len();
                kept.rows.extend(
                    mine.iter()
                        .filter(|r| ok.binary_search(&r.event_id).is_ok())
                        .copied(),
                );
                kept.close(p, from);
            }
            out = kept;
        }
        ch.batches[cp.slot] = out;
    }

    /// Appends the criteria rows of person `p` made from its gathered rows `seg`
    /// (in start date and id order): `First` keeps the first, then the filters
    /// and joins apply.
    #[inline]
    fn criteria_rows(
        &self,
        ch: &Chunk,
        cp: &CriteriaPlan,
        p: u32,
        seg: &[(u32, u32)],
        lean: bool,
        out: &mut Vec<CRow>,
    ) {
        if cp.needs_person && !self.cdm.persons.in_person_table[p as usize] {
            return;
        }
        let t = self.cdm.table(cp.domain);
        let visits = ch.visits.as_ref().map(|v| v.of(p));
        for &(r, c) in seg {
            if let Some(row) = self.row(
                cp,
                r as usize,
                t.clusters[c as usize],
                p as usize,
                visits,
                lean,
            ) {
                out.push(row);
            }
            if cp.first {
                break;
            }
        }
    }

    /// The visits of persons `lo..lo + n`: every row of visit_occurrence.
    fn visits(&self, lo: u32, n: usize) -> Grouped<(i64, i64)> {
        let t = self.cdm.table(Domain::VisitOccurrence);
        let runs: Vec<(Run<'_>, u32, Pred<'_>)> = (0..t.clusters.len())
            .map(|c| {
                let r = t.cluster(c);
                (Run::Range(r.start, r.end), c as u32, Pred::All)
            })
            .collect();
        let g = gather(t, &runs, lo, n, None);
        Grouped {
            rows: g
                .rows
                .iter()
                .map(|&(r, c)| (t.id.get(r as usize), t.clusters[c as usize]))
                .collect(),
            persons: g.persons,
            starts: g.starts,
            cursor: std::cell::Cell::new(0),
        }
    }

    /// Custom era spans of the persons marked in `allowed`: drug exposures
    /// whose concept, or separately whose source concept, is in `drugs`.
    fn custom_era_spans(
        &self,
        ch: &Chunk,
        drugs: &[i64],
        clusters: &[u32],
        days_supply: Option<i32>,
        allowed: &[bool],
    ) -> Grouped<(Day, Day)> {
        let t = self.cdm.table(Domain::DrugExposure);
        let mut runs: Vec<(Run<'_>, u32, Pred<'_>)> = clusters
            .iter()
            .map(|&c| {
                let r = t.cluster(c as usize);
                (Run::Range(r.start, r.end), c, Pred::All)
            })
            .collect();
        // Rows whose source concept is in the set but differs from their concept
        // (a row whose concept and source concept are both in the set counts twice,
        // as in the SQL; a repeated span does not change the eras).
        for &s in drugs {
            for (list, c) in t.rows_with_other_source(s) {
                runs.push((Run::List(list), c, Pred::All));
            }
        }
        let g = gather(t, &runs, ch.lo, ch.n, Some(allowed));
        let mut out: Grouped<(Day, Day)> = Grouped::default();
        for (i, &p) in g.persons.iter().enumerate() {
            let from = out.rows.len();
            for &(r, c) in &g.rows[g.starts[i] as usize..g.starts[i + 1] as usize] {
                let r = r as usize;
                let span = (t.start.get(r), drug_end(t, r, days_supply));
                out.rows.push(span);
                // A row matching on both its concept and (the same) source concept is
                // a span of each of the SQL's two queries.
                if t.source.get(r) == t.clusters[c as usize] {
                    out.rows.push(span);
                }
            }
            out.close(p, from);
        }
        out
    }

    fn id_value(&self, col: IdCol, ctx: &RowCtx<'_>, p: usize) -> i64 {
        let persons = &self.cdm.persons;
        match col {
            IdCol::Concept => ctx.concept,
            IdCol::Type => ctx.t.type_concept.get(ctx.r),
            IdCol::Extra(e) => ctx.t.extra_id(e).map_or(NULL_ID, |c| c.get(ctx.r)),
            IdCol::Gender => persons.gender[p],
            IdCol::Race => persons.race[p],
            IdCol::Ethnicity => persons.ethnicity[p],
            IdCol::VisitConcept => ctx.visit_concept,
            IdCol::ProviderSpecialty => {
                let pr = ctx.t.provider.get(ctx.r);
                self.cdm
                    .provider_specialty
                    .get(&pr)
                    .copied()
                    .unwrap_or(NULL_ID)
            }
            IdCol::PlaceOfService => ctx.place_of_service,
        }
    }
    fn num_value(&self, col: NumCol, ctx: &RowCtx<'_>, p: usize) -> f64 {
        let num = |e: Extra| ctx.t.extra_num(e).map_or(f64::NAN, |c| c.get(ctx.r));
        let yob = self.cdm.persons.year_of_birth[p];
        match col {
            NumCol::Extra(e) => num(e),
            NumCol::Duration => {
                if ctx.start == NULL_DAY || ctx.end == NULL_DAY {
                    f64::NAN
                } else {
                    f64::from(ctx.end) - f64::from(ctx.start)
                }
            }
            NumCol::AgeAtStart | NumCol::AgeAtEnd => {
                let d = if col == NumCol::AgeAtStart {
                    ctx.start
                } else {
                    ctx.end
                };
                if d == NULL_DAY || yob == NULL_ID {
                    f64::NAN
                } else {
                    year_of(d).wrapping_sub(yob) as f64
                }
            }
            NumCol::LowRatio | NumCol::HighRatio => {
                let v = num(Extra::ValueAsNumber);
                let r = num(if col == NumCol::LowRatio {
                    Extra::RangeLow
                } else {
                    Extra::RangeHigh
                });
                if r == 0.0 || r.is_nan() {
                    f64::NAN
                } else {
                    v / r
                }
            }
        }
    }

    fn filter(&self, f: &Filter, ctx: &RowCtx<'_>, p: usize) -> bool {
        match f {
            Filter::IdIn { col, ids, negate } => {
                let v = self.id_value(*col, ctx, p);
                v != NULL_ID && (ids.binary_search(&v).is_ok() != *negate)
            }
            Filter::IdNull { col, is_null } => (self.id_value(*col, ctx, p) == NULL_ID) == *is_null,
            Filter::Num(col, r) => r.test(self.num_value(*col, ctx, p)),
            Filter::Date(DateCol::Start, r) => r.test(ctx.start),
            Filter::Date(DateCol::End, r) => r.test(ctx.end),
            Filter::Abnormal => {
                let num = |e: Extra| ctx.t.extra_num(e).map_or(f64::NAN, |c| c.get(ctx.r));
                let v = num(Extra::ValueAsNumber);
                let lo = num(Extra::RangeLow);
                let hi = num(Extra::RangeHigh);
                let vc = ctx
                    .t
                    .extra_id(Extra::ValueAsConcept)
                    .map_or(NULL_ID, |c| c.get(ctx.r));
                v < lo || v > hi || vc == 4_155_142 || vc == 4_155_143
            }
            Filter::EndNotBeforeStart => ge(ctx.end, ctx.start),
            Filter::Contains(d) => le(ctx.start, *d) && ge(ctx.end, *d),
            Filter::Text {
                col,
                pattern,
                negate,
            } => ctx
                .t
                .extra_text(*col)
                .and_then(|c| c.get(ctx.r))
                .is_some_and(|v| crate::plan::like(v, pattern) != *negate),
        }
    }

    /// Row `r` of the criteria's table (cluster concept `concept`) as a row of criteria `cp`
    /// for person `p`, or `None` when a filter or join drops it. `visits` are
    /// the person's visits, when the criteria joins them. A `lean` row leaves
    /// out the event id and visit (null), for rows nothing will order, join
    /// or count by them.
    #[inline]
    fn row(
        &self,
        cp: &CriteriaPlan,
        r: usize,
        concept: i64,
        p: usize,
        visits: Option<&[(i64, i64)]>,
        lean: bool,
    ) -> Option<CRow> {
        let t = self.cdm.table(cp.domain);
        let raw_start = t.start.get(r);
        let raw_end = match cp.end_rule {
            EndRule::Stored => t.end.get(r),
            EndRule::StoredOrNextDay => {
                let e = t.end.get(r);
                if e == NULL_DAY {
                    add_days(raw_start, 1)
                } else {
                    e
                }
            }
            EndRule::DrugExposure => drug_end(t, r, None),
            EndRule::NextDay => add_days(raw_start, 1),
        };
        let (start, end) = match cp.date_adjustment {
            Some((s_from_end, so, e_from_start, eo)) => (
                add_days(if s_from_end { raw_end } else { raw_start }, so),
                add_days(if e_from_start { raw_start } else { raw_end }, eo),
            ),
            None => (raw_start, raw_end),
        };
        let mut visit_concept = NULL_ID;
        if cp.needs_visit {
            let v = t.visit.get(r);
            if v == NULL_ID {
                return None;
            }
            visit_concept = visits?.iter().find(|x| x.0 == v)?.1;
        }
        let mut place_of_service = NULL_ID;
        if cp.needs_care_site {
            let cs = t.extra_id(Extra::CareSite).map_or(NULL_ID, |c| c.get(r));
            place_of_service = *self.cdm.care_site_place.get(&cs)?;
        }
        let ctx = RowCtx {
            t,
            r,
            concept,
            start,
            end,
            visit_concept,
            place_of_service,
        };
        if !cp.filters.iter().all(|f| self.filter(f, &ctx, p)) {
            return None;
        }
        let concept = match cp.domain {
            Domain::ObservationPeriod => t.type_concept.get(r),
            Domain::Death if concept == NULL_ID => 0,
            _ => concept,
        };
        let (event_id, visit) = if lean {
            (NULL_ID, NULL_ID)
        } else {
            (t.id.get(r), t.visit.get(r))
        };
        Some(CRow {
            event_id,
            start: cp.user_period.0.unwrap_or(start),
            end: cp.user_period.1.unwrap_or(end),
            visit,
            sort: start,
            concept,
        })
    }

    /// Whether each event passes a criteria group. Events sharing an id share
    /// the answer, and each copy counts once more in the group's tally, as in
    /// the SQL join.
    fn group(&self, ch: &Chunk, g: &GroupPlan, p: usize, evs: &[IndexEvent]) -> Vec<bool> {
        if g.members() == 0 {
            return vec![true; evs.len()];
        }
        // Map events to distinct ids.
        let unique = evs.windows(2).all(|w| w[0].event_id < w[1].event_id);
        let (gid, n_groups): (Vec<usize>, usize) = if unique {
            ((0..evs.len()).collect(), evs.len())
        } else {
            let mut ids: Vec<i64> = evs.iter().map(|e| e.event_id).collect();
            ids.sort_unstable();
            ids.dedup();
            (
                evs.iter()
                    .map(|e| ids.binary_search(&e.event_id).unwrap_or(0))
                    .collect(),
                ids.len(),
            )
        };
        let mut mult = vec![0i64; n_groups];
        for &g in &gid {
            mult[g] += 1;
        }
        let mut passing = vec![0i64; n_groups];
        for c in &g.criteria {
            for (gi, ok) in self
                .correlated(ch, c, p, evs, &gid, n_groups)
                .into_iter()
                .enumerate()
            {
                passing[gi] += i64::from(ok);
            }
        }
        for d in &g.demographics {
            let mut ok = vec![false; n_groups];
            for (i, e) in evs.iter().enumerate() {
                if self.demographic(d, p, e) {
                    ok[gid[i]] = true;
                }
            }
            for (gi, ok) in ok.into_iter().enumerate() {
                passing[gi] += i64::from(ok);
            }
        }
        for sub in &g.groups {
            let res = self.group(ch, sub, p, evs);
            let mut ok = vec![false; n_groups];
            for (i, r) in res.into_iter().enumerate() {
                ok[gid[i]] |= r;
            }
            for (gi, ok) in ok.into_iter().enumerate() {
                passing[gi] += i64::from(ok);
            }
        }
        let members = g.members() as i64;
        let group_ok: Vec<bool> = (0..n_groups)
            .map(|gi| {
                let count = mult[gi] * passing[gi];
                match g.rule {
                    GroupRule::All => count == members,
                    GroupRule::Any => count > 0,
                    GroupRule::AtLeast(k) => count >= k,
                    GroupRule::AtMost(k) => count <= k,
                }
            })
            .collect();
        gid.iter().map(|&gi| group_ok[gi]).collect()
    }

    /// [`Self::group`] for a single event (the common case: one entry event
    /// per person), without allocating.
    fn group_one(&self, ch: &Chunk, g: &GroupPlan, p: usize, e: &IndexEvent) -> bool {
        if g.members() == 0 {
            return true;
        }
        let mut passing = 0i64;
        for c in &g.criteria {
            passing += i64::from(self.correlated_one(ch, c, p, e));
        }
        for d in &g.demographics {
            passing += i64::from(self.demographic(d, p, e));
        }
        for sub in &g.groups {
            passing += i64::from(self.group_one(ch, sub, p, e));
        }
        match g.rule {
            GroupRule::All => passing == g.members() as i64,
            GroupRule::Any => passing > 0,
            GroupRule::AtLeast(k) => passing >= k,
            GroupRule::AtMost(k) => passing <= k,
        }
    }

    /// [`Self::correlated`] for a single event.
    fn correlated_one(&self, ch: &Chunk, c: &CorrelatedPlan, p: usize, e: &IndexEvent) -> bool {
        let rows = ch.rows(c.criteria.slot, p);
        let count = match c.distinct {
            None => rows.iter().filter(|a| Self::related(c, e, a)).count() as i64,
            Some(col) => {
                let mut keys: Vec<i64> = rows
                    .iter()
                    .filter(|a| Self::related(c, e, a))
                    .map(|a| Self::distinct_key(col, a))
                    .filter(|&k| k != NULL_ID)
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                keys.len() as i64
            }
        };
        c.op.test(count, c.count)
    }

    /// Whether row `a` of a correlated criteria is related to index event `e`
    /// (observation period, windows, visit).
    #[inline]
    fn related(c: &CorrelatedPlan, e: &IndexEvent, a: &CRow) -> bool {
        if c.check_op && !(ge(a.start, e.op_start) && le(a.start, e.op_end)) {
            return false;
        }
        if !Self::window_ok(&c.start, e, a) {
            return false;
        }
        if let Some(w) = &c.end
            && !Self::window_ok(w, e, a)
        {
            return false;
        }
        !(c.restrict_visit && (a.visit == NULL_ID || e.visit == NULL_ID || a.visit != e.visit))
    }

    /// The value a distinct count counts ([`NULL_ID`] for null).
    #[inline]
    fn distinct_key(col: CountColumn, a: &CRow) -> i64 {
        match col {
            CountColumn::DomainConcept => a.concept,
            CountColumn::StartDate => {
                if a.start == NULL_DAY {
                    NULL_ID
                } else {
                    i64::from(a.start)
                }
            }
            CountColumn::EndDate => {
                if a.end == NULL_DAY {
                    NULL_ID
                } else {
                    i64::from(a.end)
                }
            }
            CountColumn::Visit => a.visit,
        }
    }

    fn demographic(&self, d: &DemographicPlan, p: usize, e: &IndexEvent) -> bool {
        if !self.cdm.persons.in_person_table[p] {
            return false;
        }
        static EMPTY: std::sync::OnceLock<EventTable> = std::sync::OnceLock::new();
        let ctx = RowCtx {
            t: EMPTY.get_or_init(EventTable::default),
            r: 0,
            concept: NULL_ID,
            start: e.start,
            end: e.end,
            visit_concept: NULL_ID,
            place_of_service: NULL_ID,
        };
        d.filters.iter().all(|f| self.filter(f, &ctx, p))
    }

    fn window_ok(w: &WindowPlan, e: &IndexEvent, a: &CRow) -> bool {
        let idx = if w.index_end { e.end } else { e.start };
        let ed = if w.event_end { a.end } else { a.start };
        let bound = |b: Bound| match b {
            Bound::Offset(n) => add_days(idx, n),
            Bound::OpStart => e.op_start,
            Bound::OpEnd => e.op_end,
        };
        if let Some(b) = w.lower
            && !ge(ed, bound(b))
        {
            return false;
        }
        if let Some(b) = w.upper
            && !le(ed, bound(b))
        {
            return false;
        }
        true
    }

    fn correlated(
        &self,
        ch: &Chunk,
        c: &CorrelatedPlan,
        p: usize,
        evs: &[IndexEvent],
        gid: &[usize],
        n: usize,
    ) -> Vec<bool> {
        let rows = ch.rows(c.criteria.slot, p);
        let mut counts = vec![0i64; n];
        let mut keys: Vec<Vec<i64>> = if c.distinct.is_some() {
            vec![Vec::new(); n]
        } else {
            Vec::new()
        };
        for (i, e) in evs.iter().enumerate() {
            for a in rows {
                if !Self::related(c, e, a) {
                    continue;
                }
                match c.distinct {
                    None => counts[gid[i]] += 1,
                    Some(col) => {
                        let key = Self::distinct_key(col, a);
                        if key != NULL_ID {
                            keys[gid[i]].push(key);
                        }
                    }
                }
            }
        }
        if c.distinct.is_some() {
            for (gi, k) in keys.iter_mut().enumerate() {
                k.sort_unstable();
                k.dedup();
                counts[gi] = k.len() as i64;
            }
        }
        counts.into_iter().map(|n| c.op.test(n, c.count)).collect()
    }

    /// Appends person `p`'s entry events to `out`.
    /// `rows` are the person's rows of each primary criteria, `periods` its
    /// observation periods (start, end).
    fn primary_events(
        &self,
        rows: &[Vec<CRow>],
        periods: &[(Day, Day)],
        cands: &mut Vec<(CRow, Day, Day)>,
        out: &mut Vec<IndexEvent>,
    ) {
        let plan = self.plan;
        // One criteria whose dates are not adjusted gives its rows in (start, id)
        // order already: events are numbered as they come.
        if let ([c], [mine]) = (plan.primary.as_slice(), rows)
            && c.date_adjustment.is_none()
            && plan.primary_limit != Limit::Last
        {
            let from = out.len();
            for r in mine {
                for &(os, oe) in periods {
                    if self.in_window(r.start, os, oe) {
                        out.push(IndexEvent {
                            event_id: (out.len() - from) as i64 + 1,
                            start: r.start,
                            end: r.end,
                            op_start: os,
                            op_end: oe,
                            visit: r.visit,
                        });
                        if plan.primary_limit == Limit::First {
                            return;
                        }
                    }
                }
            }
            return;
        }
        cands.clear();
        for mine in rows {
            for r in mine {
                for &(os, oe) in periods {
                    if self.in_window(r.start, os, oe) {
                        cands.push((*r, os, oe));
                    }
                }
            }
        }
        if cands.is_empty() {
            return;
        }
        if cands.len() > 1 {
            match plan.primary_limit {
                Limit::Last => cands.sort_by(|a, b| {
                    b.0.sort
                        .cmp(&a.0.sort)
                        .then(a.0.event_id.cmp(&b.0.event_id))
                }),
                _ => cands.sort_by(|a, b| {
                    a.0.sort
                        .cmp(&b.0.sort)
                        .then(a.0.event_id.cmp(&b.0.event_id))
                }),
            }
        }
        if plan.primary_limit != Limit::All {
            cands.truncate(1);
        }
        out.extend(
            cands
                .iter()
                .enumerate()
                .map(|(i, &(r, os, oe))| IndexEvent {
                    event_id: i as i64 + 1,
                    start: r.start,
                    end: r.end,
                    op_start: os,
                    op_end: oe,
                    visit: r.visit,
                }),
        );
    }

    /// The first (or last) event by date, or all.
    #[inline]
    fn limit(events: &[IndexEvent], limit: Limit) -> &[IndexEvent] {
        let best = match limit {
            Limit::All => return events,
            Limit::First => events
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.start, e.event_id)),
            Limit::Last => events
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (std::cmp::Reverse(e.start), e.event_id)),
        };
        match best {
            Some((i, _)) => &events[i..=i],
            None => events,
        }
    }

    /// Evaluates person `p` (id `subject_id`) with entry events `primary`; its
    /// cohort rows and inclusion masks go to `part`.
    fn person(
        &self,
        ch: &Chunk,
        p: usize,
        subject_id: i64,
        primary: &[IndexEvent],
        s: &mut Scratch,
        part: &mut Partial,
    ) {
        let plan = self.plan;
        let Scratch {
            qualified,
            masks,
            ends,
            episodes,
            spans,
            eras: custom_eras,
            ..
        } = s;
        let mut evs: &[IndexEvent] = primary;
        if let Some(g) = &plan.additional {
            qualified.clear();
            if let [e] = primary {
                if self.group_one(ch, g, p, e) {
                    qualified.push(*e);
                }
            } else {
                let pass = self.group(ch, g, p, primary);
                qualified.extend(
                    primary
                        .iter()
                        .zip(pass)
                        .filter_map(|(e, ok)| ok.then_some(*e)),
                );
            }
            evs = qualified;
        }
        evs = Self::limit(evs, plan.qualified_limit);
        if evs.is_empty() {
            return;
        }
        if !plan.rules.is_empty() {
            masks.clear();
            masks.resize(evs.len(), 0);
            for (i, rule) in plan.rules.iter().enumerate() {
                if let [e] = evs {
                    if self.group_one(ch, rule, p, e) {
                        masks[0] |= 1u64 << i;
                    }
                    continue;
                }
                for (m, ok) in masks.iter_mut().zip(self.group(ch, rule, p, evs)) {
                    if ok {
                        *m |= 1u64 << i;
                    }
                }
            }
            let all = (1u64 << plan.rules.len()) - 1;
            part.event_masks.extend_from_slice(masks);
            let best = evs
                .iter()
                .zip(masks.iter())
                .min_by_key(|(e, m)| {
                    let min_rule = if **m == 0 { 0 } else { m.trailing_zeros() };
                    (
                        std::cmp::Reverse(m.count_ones()),
                        min_rule,
                        e.start,
                        e.event_id,
                    )
                })
                .map(|(_, m)| *m);
            part.best_masks.extend(best);
            if masks.iter().any(|&m| m != all) {
                let kept: Vec<IndexEvent> = evs
                    .iter()
                    .zip(masks.iter())
                    .filter(|(_, m)| **m == all)
                    .map(|(e, _)| *e)
                    .collect();
                *qualified = kept;
                evs = qualified;
            }
        }
        evs = Self::limit(evs, plan.expression_limit);
        if evs.is_empty() {
            return;
        }

        custom_eras.clear();
        if let (EndPlan::CustomEra { gap, offset, .. }, Some(all)) = (&plan.end, &ch.spans) {
            spans.clear();
            spans.extend_from_slice(all.of(p as u32));
            eras_into(spans, gap.saturating_add(*offset), *gap, custom_eras);
        }

        ends.clear();
        for e in evs {
            let mut best = self.strategy_end(e, custom_eras);
            for c in &plan.censoring {
                let m = ch
                    .rows(c.slot, p)
                    .iter()
                    .filter(|c| ge(c.start, e.start) && le(c.start, e.op_end))
                    .map(|c| c.start)
                    .min();
                if let Some(m) = m
                    && ge(m, e.start)
                    && best.is_none_or(|b| m < b)
                {
                    best = Some(m);
                }
            }
            if let Some(end) = best {
                ends.push((e.start, end));
            }
        }
        self.finish(subject_id, ends, episodes, part);
    }

    /// The end the end strategy gives event `e` (`None` when no candidate end
    /// falls on or after its start); `custom_eras` are the person's drug eras
    /// for the custom era strategy.
    #[inline]
    fn strategy_end(&self, e: &IndexEvent, custom_eras: &[(Day, Day)]) -> Option<Day> {
        let mut best: Option<Day> = None;
        let mut consider = |d: Day| {
            if ge(d, e.start) && best.is_none_or(|b| d < b) {
                best = Some(d);
            }
        };
        match &self.plan.end {
            EndPlan::DateOffset { from_end, offset } => {
                let base = if *from_end { e.end } else { e.start };
                let d = add_days(base, *offset);
                consider(if d != NULL_DAY && d > e.op_end {
                    e.op_end
                } else {
                    d
                });
            }
            EndPlan::ObservationPeriodEnd => consider(e.op_end),
            EndPlan::CustomEra { .. } => {
                consider(e.op_end);
                for &(s, en) in custom_eras {
                    if le(s, e.start) && ge(en, e.start) {
                        consider(en);
                    }
                }
            }
        }
        best
    }

    /// Collapses a person's (start, end) spans into eras, applies the censor
    /// window and appends the cohort rows to `part`.
    #[inline]
    fn finish(
        &self,
        subject_id: i64,
        ends: &mut [(Day, Day)],
        episodes: &mut Vec<(Day, Day)>,
        part: &mut Partial,
    ) {
        let plan = self.plan;
        eras_into(ends, plan.era_pad, plan.era_pad, episodes);
        self.emit(subject_id, episodes, part);
    }

    /// Applies the censor window to a person's eras and appends them to `part`.
    #[inline]
    fn emit(&self, subject_id: i64, episodes: &mut Vec<(Day, Day)>, part: &mut Partial) {
        let plan = self.plan;
        let before_censor_window = !episodes.is_empty();
        let (cw_start, cw_end) = plan.censor_window;
        if cw_start.is_some() || cw_end.is_some() {
            episodes.retain_mut(|(s, e)| {
                if let Some(c) = cw_start
                    && *s <= c
                {
                    *s = c;
                }
                if let Some(c) = cw_end
                    && *e >= c
                {
                    *e = c;
                }
                s <= e
            });
        }
        if before_censor_window && episodes.is_empty() {
            part.censored_lost += 1;
        }
        part.rows
            .extend(episodes.iter().map(|&(start, end)| CohortRow {
                subject_id,
                start,
                end,
            }));
    }
}

/// `coalesce(end, start + days_supply, start + 1)`, or `start + override`.
fn drug_end(t: &EventTable, r: usize, days_supply_override: Option<i32>) -> Day {
    let start = t.start.get(r);
    if let Some(o) = days_supply_override {
        return add_days(start, o);
    }
    let end = t.end.get(r);
    if end != NULL_DAY {
        return end;
    }
    if let Some(ds) = t.extra_num(Extra::DaysSupply) {
        let ds = ds.get(r);
        if !ds.is_nan() {
            return add_days(start, ds as i32);
        }
    }
    add_days(start, 1)
}

/// Circe's era builder: spans whose (end + `add`) reaches the next start are
/// merged; each era ends at its largest (end + `add`) minus `sub`.
pub fn eras(mut spans: Vec<(Day, Day)>, add: i32, sub: i32) -> Vec<(Day, Day)> {
    let mut out = Vec::new();
    eras_into(&mut spans, add, sub, &mut out);
    out
}

/// [`eras`] into a reused buffer (`spans` is sorted in place; `out` is replaced).
fn eras_into(spans: &mut [(Day, Day)], add: i32, sub: i32, out: &mut Vec<(Day, Day)>) {
    out.clear();
    if !spans.is_sorted() {
        spans.sort_unstable();
    }
    let mut b = EraBuilder::new(add, sub);
    for &(s, e) in spans.iter() {
        b.push(s, e, out);
    }
    b.finish(out);
}

/// Circe's era builder over spans given in (start, end) order, one span at a time.
struct EraBuilder {
    add: i32,
    sub: i32,
    running: Option<Day>,
    current: Option<(Day, Day)>,
}

impl EraBuilder {
    #[inline]
    fn new(add: i32, sub: i32) -> Self {
        Self {
            add,
            sub,
            running: None,
            current: None,
        }
    }

    /// Adds a span; an era it closes goes to `out`.
    #[inline]
    fn push(&mut self, s: Day, e: Day, out: &mut Vec<(Day, Day)>) {
        let padded = add_days(e, self.add);
        let continues = self.running.is_some_and(|m| ge(m, s));
        if !continues {
            if let Some((cs, ce)) = self.current.take() {
                out.push((cs, add_days(ce, self.sub.saturating_neg())));
            }
            self.current = Some((s, padded));
        } else if let Some((_, ce)) = self.current.as_mut()
            && padded != NULL_DAY
            && (*ce == NULL_DAY || padded > *ce)
        {
            *ce = padded;
        }
        if padded != NULL_DAY {
            self.running = Some(self.running.map_or(padded, |m| m.max(padded)));
        }
    }

    /// Closes the last era.
    #[inline]
    fn finish(&mut self, out: &mut Vec<(Day, Day)>) {
        if let Some((cs, ce)) = self.current.take() {
            out.push((cs, add_days(ce, self.sub.saturating_neg())));
        }
    }
}

/// Inclusion-rule statistics as Circe stores them (`cohort_inclusion_result`,
/// `cohort_inclusion_stats`, `cohort_summary_stats`), for one mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InclusionStats {
    /// Inclusion rule mask → number of events (mode 0) or persons (mode 1).
    pub mask_counts: BTreeMap<u64, u64>,
    /// Per rule: (events passing the rule, events failing only this rule).
    pub rules: Vec<(u64, u64)>,
    /// Number of qualified events (or persons).
    pub total: u64,
    /// Number passing all rules.
    pub final_count: u64,
}

impl InclusionStats {
    fn from_masks(masks: &[u64], n_rules: usize) -> Self {
        let mut s = InclusionStats {
            total: masks.len() as u64,
            ..InclusionStats::default()
        };
        if n_rules <= 16 {
            let mut dense = vec![0u64; 1 << n_rules];
            for &m in masks {
                dense[m as usize & ((1 << n_rules) - 1)] += 1;
            }
            s.mask_counts = dense
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .map(|(m, n)| (m as u64, n))
                .collect();
        } else {
            let mut sorted = masks.to_vec();
            sorted.sort_unstable();
            for run in sorted.chunk_by(|a, b| a == b) {
                s.mask_counts.insert(run[0], run.len() as u64);
            }
        }
        let all = if n_rules == 0 {
            0
        } else {
            (1u64 << n_rules) - 1
        };
        s.final_count = s.mask_counts.get(&all).copied().unwrap_or(0);
        for i in 0..n_rules {
            let person_count = s
                .mask_counts
                .iter()
                .filter(|(m, _)| *m & (1 << i) != 0)
                .map(|(_, c)| c)
                .sum();
            let gain = s
                .mask_counts
                .get(&(all & !(1u64 << i)))
                .copied()
                .unwrap_or(0);
            s.rules.push((person_count, gain));
        }
        s
    }

    /// Mode 0 (the masks of all qualified events) and mode 1 (each person's best mask).
    pub fn from_masks_of(event_masks: &[u64], best_masks: &[u64], n_rules: usize) -> (Self, Self) {
        if n_rules == 0 {
            return (Self::default(), Self::default());
        }
        (
            Self::from_masks(event_masks, n_rules),
            Self::from_masks(best_masks, n_rules),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(-1), 1969);
        assert_eq!(year_of(365), 1971);
        assert_eq!(year_of(11_016), 2000); // 2000-02-29
        assert_eq!(year_of(11_322), 2000); // 2000-12-31
        assert_eq!(year_of(11_323), 2001);
    }

    #[test]
    fn era_collapse() {
        assert_eq!(
            eras(vec![(10, 12), (1, 5), (6, 8)], 0, 0),
            vec![(1, 5), (6, 8), (10, 12)]
        );
        assert_eq!(
            eras(vec![(10, 12), (1, 5), (6, 8)], 1, 1),
            vec![(1, 8), (10, 12)]
        );
        assert_eq!(
            eras(vec![(1, 20), (2, 3), (25, 30)], 0, 0),
            vec![(1, 20), (25, 30)]
        );
    }
}
