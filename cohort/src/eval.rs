//! Per-person evaluation of a [`CohortPlan`].
//!
//! Every step of Circe's generated SQL is a join or window partitioned by
//! person, so a cohort is evaluated one person at a time over that person's
//! slice of each event table, in parallel with rayon. Results are gathered in
//! person order, so the output does not depend on thread scheduling.

use crate::cdm::{Cdm, Day, Domain, EventTable, Extra, NULL_DAY, NULL_ID};
use crate::plan::{
    Bound, CohortPlan, CorrelatedPlan, CountColumn, CriteriaPlan, DateCol, DemographicPlan,
    EndPlan, EndRule, Filter, GroupPlan, GroupRule, IdCol, Limit, NumCol, WindowPlan,
};
use rayon::prelude::*;
use roaring::RoaringBitmap;
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

impl PersonOutcome {
    /// True when the person contributes nothing (no episode, no statistics).
    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
            && self.event_masks.is_empty()
            && self.best_mask.is_none()
            && !self.before_censor_window
    }
}

/// What one person contributes to a cohort.
#[derive(Debug, Clone, Default)]
pub struct PersonOutcome {
    /// Final cohort episodes (start, end).
    pub episodes: Vec<(Day, Day)>,
    /// Inclusion rule mask of every qualified event.
    pub event_masks: Vec<u64>,
    /// Mask of the person's best qualified event, if any.
    pub best_mask: Option<u64>,
    /// The person had episodes before the censor window was applied.
    pub before_censor_window: bool,
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

#[inline]
fn contains(ids: &[i64], v: i64) -> bool {
    v != NULL_ID && ids.binary_search(&v).is_ok()
}

/// Evaluates one compiled cohort over one CDM.
pub struct Evaluator<'a> {
    cdm: &'a Cdm,
    plan: &'a CohortPlan,
}

struct RowCtx<'t> {
    t: &'t EventTable,
    r: usize,
    start: Day,
    end: Day,
    visit_concept: i64,
    place_of_service: i64,
}

impl<'a> Evaluator<'a> {
    /// Prepares an evaluator.
    pub fn new(cdm: &'a Cdm, plan: &'a CohortPlan) -> Self {
        Self { cdm, plan }
    }

    /// The persons that can have an entry event: those with a row matching a
    /// primary criteria's concept sets (all persons with rows otherwise).
    pub fn candidates(&self) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for c in &self.plan.primary {
            match &c.persons {
                Some(b) => out |= b.as_ref(),
                None => out |= &self.cdm.concept_index(c.domain).any,
            }
        }
        // Entry events lie in an observation period, and qualify only when the
        // additional criteria can pass (entry events have unique ids).
        out &= &self.cdm.concept_index(Domain::ObservationPeriod).any;
        if let Some(b) = self
            .plan
            .additional
            .as_ref()
            .and_then(|g| g.necessary_persons(true))
        {
            out &= b;
        }
        out
    }

    /// Evaluates every candidate person, in parallel. The result holds the
    /// persons with a qualified event, in person order.
    pub fn run(&self) -> Vec<(usize, PersonOutcome)> {
        let candidates: Vec<u32> = self.candidates().iter().collect();
        candidates
            .par_iter()
            .map(|&p| (p as usize, self.person(p as usize)))
            .filter(|(_, o)| !o.is_empty())
            .collect()
    }

    fn id_value(&self, col: IdCol, ctx: &RowCtx<'_>, p: usize) -> i64 {
        let persons = &self.cdm.persons;
        match col {
            IdCol::Concept => ctx.t.concept.get(ctx.r),
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
        }
    }

    /// The rows a criteria selects for person `p`, correlated criteria applied.
    fn criteria_rows(&self, cp: &CriteriaPlan, p: usize) -> Vec<CRow> {
        let mut out = Vec::new();
        if cp.needs_person && !self.cdm.persons.in_person_table[p] {
            return out;
        }
        if let Some(b) = &cp.persons
            && !b.contains(p as u32)
        {
            return out;
        }
        let t = self.cdm.table(cp.domain);
        let visits = self.cdm.table(Domain::VisitOccurrence);
        let mut seen_first = false;
        for r in t.rows(p) {
            if let Some(m) = &cp.concept_match
                && !m.test(&t.concept, r)
            {
                continue;
            }
            if let Some(m) = &cp.source_match
                && !m.test(&t.source, r)
            {
                continue;
            }
            if cp.first {
                if seen_first {
                    break;
                }
                seen_first = true;
            }
            let raw_start = t.start.get(r);
            let raw_end = match cp.end_rule {
                EndRule::Stored => t.end.get(r),
                EndRule::StoredOrNextDay => {
                    if t.end.get(r) == NULL_DAY {
                        add_days(raw_start, 1)
                    } else {
                        t.end.get(r)
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
                let found = visits
                    .rows(p)
                    .find(|&vr| visits.id.get(vr) == v && v != NULL_ID);
                match found {
                    Some(vr) => visit_concept = visits.concept.get(vr),
                    None => continue,
                }
            }
            let mut place_of_service = NULL_ID;
            if cp.needs_care_site {
                let cs = t.extra_id(Extra::CareSite).map_or(NULL_ID, |c| c.get(r));
                match self.cdm.care_site_place.get(&cs) {
                    Some(&pl) => place_of_service = pl,
                    None => continue,
                }
            }
            let ctx = RowCtx {
                t,
                r,
                start,
                end,
                visit_concept,
                place_of_service,
            };
            if !cp.filters.iter().all(|f| self.filter(f, &ctx, p)) {
                continue;
            }
            let concept = match cp.domain {
                Domain::ObservationPeriod => t.type_concept.get(r),
                Domain::Death => {
                    if t.concept.get(r) == NULL_ID {
                        0
                    } else {
                        t.concept.get(r)
                    }
                }
                _ => t.concept.get(r),
            };
            out.push(CRow {
                event_id: t.id.get(r),
                start: cp.user_period.0.unwrap_or(start),
                end: cp.user_period.1.unwrap_or(end),
                visit: t.visit.get(r),
                sort: start,
                concept,
            });
        }
        if let Some(g) = &cp.correlated {
            let ops = self.cdm.table(Domain::ObservationPeriod);
            let mut evs = Vec::new();
            for row in &out {
                for o in ops.rows(p) {
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
            let pass = self.group(g, p, &evs);
            let mut ok: Vec<i64> = evs
                .iter()
                .zip(&pass)
                .filter(|(_, ok)| **ok)
                .map(|(e, _)| e.event_id)
                .collect();
            ok.sort_unstable();
            out.retain(|r| ok.binary_search(&r.event_id).is_ok());
        }
        out
    }

    /// Whether each event passes a criteria group. Events sharing an id share
    /// the answer, and each copy counts once more in the group's tally, as in
    /// the SQL join.
    fn group(&self, g: &GroupPlan, p: usize, evs: &[IndexEvent]) -> Vec<bool> {
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
                .correlated(c, p, evs, &gid, n_groups)
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
            let res = self.group(sub, p, evs);
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

    fn demographic(&self, d: &DemographicPlan, p: usize, e: &IndexEvent) -> bool {
        if !self.cdm.persons.in_person_table[p] {
            return false;
        }
        let empty = EventTable::default();
        let ctx = RowCtx {
            t: &empty,
            r: 0,
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
        c: &CorrelatedPlan,
        p: usize,
        evs: &[IndexEvent],
        gid: &[usize],
        n: usize,
    ) -> Vec<bool> {
        let rows = self.criteria_rows(&c.criteria, p);
        let mut counts = vec![0i64; n];
        let mut keys: Vec<Vec<i64>> = if c.distinct.is_some() {
            vec![Vec::new(); n]
        } else {
            Vec::new()
        };
        for (i, e) in evs.iter().enumerate() {
            for a in &rows {
                if c.check_op && !(ge(a.start, e.op_start) && le(a.start, e.op_end)) {
                    continue;
                }
                if !Self::window_ok(&c.start, e, a) {
                    continue;
                }
                if let Some(w) = &c.end
                    && !Self::window_ok(w, e, a)
                {
                    continue;
                }
                if c.restrict_visit
                    && (a.visit == NULL_ID || e.visit == NULL_ID || a.visit != e.visit)
                {
                    continue;
                }
                match c.distinct {
                    None => counts[gid[i]] += 1,
                    Some(col) => {
                        let key = match col {
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
                        };
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

    fn primary_events(&self, p: usize) -> Vec<IndexEvent> {
        let plan = self.plan;
        let mut rows = Vec::new();
        for c in &plan.primary {
            rows.extend(self.criteria_rows(c, p));
        }
        if rows.is_empty() {
            return Vec::new();
        }
        let ops = self.cdm.table(Domain::ObservationPeriod);
        let mut cands: Vec<(CRow, Day, Day)> = Vec::new();
        for r in &rows {
            for o in ops.rows(p) {
                let (os, oe) = (ops.start.get(o), ops.end.get(o));
                if le(os, r.start)
                    && ge(oe, r.start)
                    && le(add_days(os, plan.prior_days), r.start)
                    && le(add_days(r.start, plan.post_days), oe)
                {
                    cands.push((*r, os, oe));
                }
            }
        }
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
        if plan.primary_limit != Limit::All {
            cands.truncate(1);
        }
        cands
            .into_iter()
            .enumerate()
            .map(|(i, (r, os, oe))| IndexEvent {
                event_id: i as i64 + 1,
                start: r.start,
                end: r.end,
                op_start: os,
                op_end: oe,
                visit: r.visit,
            })
            .collect()
    }

    fn limit(events: &mut Vec<IndexEvent>, limit: Limit) {
        match limit {
            Limit::All => {}
            Limit::First => {
                if let Some(best) = events.iter().min_by_key(|e| (e.start, e.event_id)).copied() {
                    *events = vec![best];
                }
            }
            Limit::Last => {
                if let Some(best) = events
                    .iter()
                    .min_by_key(|e| (std::cmp::Reverse(e.start), e.event_id))
                    .copied()
                {
                    *events = vec![best];
                }
            }
        }
    }

    /// Evaluates one person.
    pub fn person(&self, p: usize) -> PersonOutcome {
        let plan = self.plan;
        let mut out = PersonOutcome::default();
        let primary = self.primary_events(p);
        if primary.is_empty() {
            return out;
        }
        let mut qualified = match &plan.additional {
            Some(g) => {
                let pass = self.group(g, p, &primary);
                primary
                    .into_iter()
                    .zip(pass)
                    .filter_map(|(e, ok)| ok.then_some(e))
                    .collect()
            }
            None => primary,
        };
        Self::limit(&mut qualified, plan.qualified_limit);
        if qualified.is_empty() {
            return out;
        }
        let mut masks = if plan.rules.is_empty() {
            Vec::new()
        } else {
            vec![0u64; qualified.len()]
        };
        for (i, rule) in plan.rules.iter().enumerate() {
            for (m, ok) in masks.iter_mut().zip(self.group(rule, p, &qualified)) {
                if ok {
                    *m |= 1u64 << i;
                }
            }
        }
        let all = if plan.rules.is_empty() {
            0
        } else {
            (1u64 << plan.rules.len()) - 1
        };
        if !plan.rules.is_empty() {
            out.event_masks = masks.clone();
            let best = qualified
                .iter()
                .zip(&masks)
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
            out.best_mask = best;
        }
        let mut included: Vec<IndexEvent> = if plan.rules.is_empty() {
            qualified
        } else {
            qualified
                .into_iter()
                .zip(&masks)
                .filter_map(|(e, m)| (*m == all).then_some(e))
                .collect()
        };
        Self::limit(&mut included, plan.expression_limit);
        if included.is_empty() {
            return out;
        }

        let custom_eras = match &plan.end {
            EndPlan::CustomEra {
                drugs,
                gap,
                offset,
                days_supply,
            } => {
                let t = self.cdm.table(Domain::DrugExposure);
                let mut spans = Vec::new();
                for r in t.rows(p) {
                    let end = drug_end(t, r, *days_supply);
                    if contains(drugs, t.concept.get(r)) {
                        spans.push((t.start.get(r), end));
                    }
                    if contains(drugs, t.source.get(r)) {
                        spans.push((t.start.get(r), end));
                    }
                }
                eras(spans, gap.saturating_add(*offset), *gap)
            }
            _ => Vec::new(),
        };
        let censor_rows: Vec<Vec<CRow>> = plan
            .censoring
            .iter()
            .map(|c| self.criteria_rows(c, p))
            .collect();

        let mut cohort_rows = Vec::with_capacity(included.len());
        for e in &included {
            let mut best: Option<Day> = None;
            let mut consider = |d: Day| {
                if ge(d, e.start) && best.is_none_or(|b| d < b) {
                    best = Some(d);
                }
            };
            match &plan.end {
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
                    for &(s, en) in &custom_eras {
                        if le(s, e.start) && ge(en, e.start) {
                            consider(en);
                        }
                    }
                }
            }
            for rows in &censor_rows {
                let m = rows
                    .iter()
                    .filter(|c| ge(c.start, e.start) && le(c.start, e.op_end))
                    .map(|c| c.start)
                    .min();
                if let Some(m) = m {
                    consider(m);
                }
            }
            if let Some(end) = best {
                cohort_rows.push((e.start, end));
            }
        }
        let mut episodes = eras(cohort_rows, plan.era_pad, plan.era_pad);
        out.before_censor_window = !episodes.is_empty();
        let (cw_start, cw_end) = plan.censor_window;
        if cw_start.is_some() || cw_end.is_some() {
            episodes = episodes
                .into_iter()
                .map(|(s, e)| {
                    let s = match cw_start {
                        Some(c) if s <= c => c,
                        _ => s,
                    };
                    let e = match cw_end {
                        Some(c) if e >= c => c,
                        _ => e,
                    };
                    (s, e)
                })
                .filter(|(s, e)| s <= e)
                .collect();
        }
        out.episodes = episodes;
        out
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
    spans.sort_unstable();
    let mut out: Vec<(Day, Day)> = Vec::new();
    let mut running: Option<Day> = None;
    let mut current: Option<(Day, Day)> = None;
    for (s, e) in spans {
        let padded = add_days(e, add);
        let continues = running.is_some_and(|m| ge(m, s));
        if !continues {
            if let Some((cs, ce)) = current.take() {
                out.push((cs, add_days(ce, sub.saturating_neg())));
            }
            current = Some((s, padded));
        } else if let Some((_, ce)) = current.as_mut()
            && padded != NULL_DAY
            && (*ce == NULL_DAY || padded > *ce)
        {
            *ce = padded;
        }
        if padded != NULL_DAY {
            running = Some(running.map_or(padded, |m| m.max(padded)));
        }
    }
    if let Some((cs, ce)) = current {
        out.push((cs, add_days(ce, sub.saturating_neg())));
    }
    out
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
    fn from_masks(masks: impl Iterator<Item = u64>, n_rules: usize) -> Self {
        let mut s = InclusionStats::default();
        for m in masks {
            *s.mask_counts.entry(m).or_default() += 1;
            s.total += 1;
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
            Self::from_masks(event_masks.iter().copied(), n_rules),
            Self::from_masks(best_masks.iter().copied(), n_rules),
        )
    }

    /// Mode 0 (all qualified events) and mode 1 (best event per person).
    pub fn from_outcomes(outcomes: &[(usize, PersonOutcome)], n_rules: usize) -> (Self, Self) {
        let events: Vec<u64> = outcomes
            .iter()
            .flat_map(|(_, o)| o.event_masks.iter().copied())
            .collect();
        let best: Vec<u64> = outcomes.iter().filter_map(|(_, o)| o.best_mask).collect();
        Self::from_masks_of(&events, &best, n_rules)
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
