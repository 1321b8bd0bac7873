//! The on-disk index: a loaded [`Cdm`] (concept-clustered, per-person
//! time-sorted event columns and person attributes), its vocabulary, and the per-concept roaring
//! person bitmaps, written once so that later runs start without re-reading
//! and re-sorting the Parquet tables.
//!
//! Layout of an index folder:
//!
//! - `manifest.json`: format version, source folder, person count, tables;
//! - `persons.bin`, `vocabulary.bin`, `lookups.bin`;
//! - `<domain>.bin` (columns) and `<domain>.bitmaps` (roaring, per concept and
//!   per source concept) for each event table.
//!
//! Arrays are stored as a little-endian `u64` length followed by the raw
//! little-endian values; columns keep their in-memory encoding (constant,
//! dictionary, offsets from a per-block base, or plain), so that loading is a bulk
//! read without re-encoding. The folder is written to `<dir>.tmp-<pid>` and renamed
//! into place, so a reader never sees a half-written index.

use crate::cdm::{
    Cdm, ConceptIndex, Days, Domain, EventTable, Extra, ExtraColumn, Ids, Nums, PersonCore,
    Persons, Texts, Vocabulary, by_domain,
};
use crate::error::{CohortError, Result};
use rayon::prelude::*;
use roaring::RoaringBitmap;
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Version of the on-disk format; an index of another version is rejected.
pub const FORMAT_VERSION: u32 = 5;

const DOMAINS: &[(Domain, &str)] = &[
    (Domain::ConditionOccurrence, "condition_occurrence"),
    (Domain::DrugExposure, "drug_exposure"),
    (Domain::ProcedureOccurrence, "procedure_occurrence"),
    (Domain::Measurement, "measurement"),
    (Domain::Observation, "observation"),
    (Domain::VisitOccurrence, "visit_occurrence"),
    (Domain::VisitDetail, "visit_detail"),
    (Domain::DeviceExposure, "device_exposure"),
    (Domain::Specimen, "specimen"),
    (Domain::Death, "death"),
    (Domain::ConditionEra, "condition_era"),
    (Domain::DrugEra, "drug_era"),
    (Domain::DoseEra, "dose_era"),
    (Domain::ObservationPeriod, "observation_period"),
];

const EXTRAS: &[(Extra, u8)] = &[
    (Extra::ConditionStatus, 1),
    (Extra::DaysSupply, 2),
    (Extra::Quantity, 3),
    (Extra::Refills, 4),
    (Extra::Route, 5),
    (Extra::DoseUnit, 6),
    (Extra::Modifier, 7),
    (Extra::Operator, 8),
    (Extra::ValueAsNumber, 9),
    (Extra::ValueAsConcept, 10),
    (Extra::Unit, 11),
    (Extra::RangeLow, 12),
    (Extra::RangeHigh, 13),
    (Extra::Qualifier, 14),
    (Extra::CareSite, 15),
    (Extra::AnatomicSite, 16),
    (Extra::DiseaseStatus, 17),
    (Extra::OccurrenceCount, 18),
    (Extra::GapDays, 19),
    (Extra::StopReason, 20),
    (Extra::LotNumber, 21),
    (Extra::UniqueDeviceId, 22),
    (Extra::ValueAsString, 23),
    (Extra::SpecimenSourceId, 24),
];

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> CohortError + '_ {
    move |source| CohortError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, message: impl Into<String>) -> CohortError {
    CohortError::Index {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

struct Writer {
    w: BufWriter<std::fs::File>,
    path: PathBuf,
}

impl Writer {
    fn create(path: PathBuf) -> Result<Self> {
        let f = std::fs::File::create(&path).map_err(io_err(&path))?;
        Ok(Self {
            w: BufWriter::new(f),
            path,
        })
    }
    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).map_err(io_err(&self.path))
    }
    fn u64(&mut self, v: u64) -> Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn array<T: Copy, const W: usize>(&mut self, v: &[T], le: impl Fn(T) -> [u8; W]) -> Result<()> {
        self.u64(v.len() as u64)?;
        let mut buf = Vec::with_capacity(W * 65_536);
        for chunk in v.chunks(65_536) {
            buf.clear();
            for &x in chunk {
                buf.extend_from_slice(&le(x));
            }
            self.bytes(&buf)?;
        }
        Ok(())
    }
    fn i64s(&mut self, v: &[i64]) -> Result<()> {
        self.array(v, i64::to_le_bytes)
    }
    fn i32s(&mut self, v: &[i32]) -> Result<()> {
        self.array(v, i32::to_le_bytes)
    }
    fn u32s(&mut self, v: &[u32]) -> Result<()> {
        self.array(v, u32::to_le_bytes)
    }
    fn f64s(&mut self, v: &[f64]) -> Result<()> {
        self.array(v, f64::to_le_bytes)
    }
    fn ids(&mut self, c: &Ids) -> Result<()> {
        match c {
            Ids::Const(v) => {
                self.bytes(&[0])?;
                self.u64(*v as u64)
            }
            Ids::Blocked { base, delta, wide } => {
                self.bytes(&[1])?;
                self.i64s(base)?;
                self.u32s(delta)?;
                self.i64s(wide)
            }
            Ids::Plain(v) => {
                self.bytes(&[2])?;
                self.i64s(v)
            }
            Ids::Dict { values, codes } => {
                self.bytes(&[3])?;
                self.i64s(values)?;
                self.array(codes, u16::to_le_bytes)
            }
        }
    }
    fn nums(&mut self, c: &Nums) -> Result<()> {
        match c {
            Nums::Whole(ids) => {
                self.bytes(&[0])?;
                self.ids(ids)
            }
            Nums::Float(v) => {
                self.bytes(&[1])?;
                self.f64s(v)
            }
        }
    }
    fn days(&mut self, c: &Days) -> Result<()> {
        match c {
            Days::Null => self.bytes(&[0]),
            Days::Plain(v) => {
                self.bytes(&[1])?;
                self.i32s(v)
            }
            Days::Blocked { base, delta } => {
                self.bytes(&[2])?;
                self.i32s(base)?;
                self.array(delta, u16::to_le_bytes)
            }
        }
    }
    fn bitmaps(&mut self, m: &HashMap<i64, RoaringBitmap>) -> Result<()> {
        let mut keys: Vec<&i64> = m.keys().collect();
        keys.sort_unstable();
        self.u64(keys.len() as u64)?;
        for k in keys {
            self.bytes(&k.to_le_bytes())?;
            let b = &m[k];
            self.u64(b.serialized_size() as u64)?;
            b.serialize_into(&mut self.w).map_err(io_err(&self.path))?;
        }
        Ok(())
    }
    fn finish(mut self) -> Result<()> {
        self.w.flush().map_err(io_err(&self.path))
    }
}

struct Reader {
    r: BufReader<std::fs::File>,
    pos: u64,
    size: u64,
    path: PathBuf,
}

impl Reader {
    fn open(path: PathBuf) -> Result<Self> {
        let f = std::fs::File::open(&path).map_err(io_err(&path))?;
        let size = f.metadata().map_err(io_err(&path))?.len();
        Ok(Self {
            r: BufReader::with_capacity(1 << 20, f),
            pos: 0,
            size,
            path,
        })
    }
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        if (n as u64) > self.size - self.pos {
            return Err(bad(&self.path, format!("truncated at byte {}", self.pos)));
        }
        let mut buf = vec![0u8; n];
        self.r.read_exact(&mut buf).map_err(io_err(&self.path))?;
        self.pos += n as u64;
        Ok(buf)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }
    fn len(&mut self, width: usize) -> Result<usize> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| bad(&self.path, "array length overflows"))?;
        if (n.saturating_mul(width) as u64) > self.size - self.pos {
            return Err(bad(
                &self.path,
                format!("array of {n} values exceeds the file at byte {}", self.pos),
            ));
        }
        Ok(n)
    }
    fn array<T, const W: usize>(&mut self, from: impl Fn([u8; W]) -> T) -> Result<Vec<T>> {
        let n = self.len(W)?;
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0u8; W * 65_536];
        let mut left = n;
        while left > 0 {
            let k = left.min(65_536);
            let chunk = &mut buf[..k * W];
            self.r.read_exact(chunk).map_err(io_err(&self.path))?;
            self.pos += (k * W) as u64;
            out.extend(chunk.chunks_exact(W).map(|c| {
                let mut a = [0u8; W];
                a.copy_from_slice(c);
                from(a)
            }));
            left -= k;
        }
        Ok(out)
    }
    fn i64s(&mut self) -> Result<Vec<i64>> {
        self.array(i64::from_le_bytes)
    }
    fn f64s(&mut self) -> Result<Vec<f64>> {
        self.array(f64::from_le_bytes)
    }
    fn i32s(&mut self) -> Result<Vec<i32>> {
        self.array(i32::from_le_bytes)
    }
    fn u32s(&mut self) -> Result<Vec<u32>> {
        self.array(u32::from_le_bytes)
    }
    fn ids(&mut self) -> Result<Ids> {
        match self.u8()? {
            0 => Ok(Ids::Const(self.u64()? as i64)),
            1 => {
                let base = self.i64s()?;
                let delta = self.u32s()?;
                let wide = self.i64s()?;
                Ok(Ids::Blocked { base, delta, wide })
            }
            2 => Ok(Ids::Plain(self.i64s()?)),
            3 => {
                let values = self.i64s()?;
                let codes = self.array(u16::from_le_bytes)?;
                Ok(Ids::Dict { values, codes })
            }
            t => Err(bad(&self.path, format!("unknown id column encoding {t}"))),
        }
    }
    fn nums(&mut self) -> Result<Nums> {
        match self.u8()? {
            0 => Ok(Nums::Whole(self.ids()?)),
            1 => Ok(Nums::Float(self.f64s()?)),
            t => Err(bad(
                &self.path,
                format!("unknown number column encoding {t}"),
            )),
        }
    }
    fn days(&mut self) -> Result<Days> {
        match self.u8()? {
            0 => Ok(Days::Null),
            1 => Ok(Days::Plain(self.i32s()?)),
            2 => {
                let base = self.i32s()?;
                let delta = self.array(u16::from_le_bytes)?;
                Ok(Days::Blocked { base, delta })
            }
            t => Err(bad(&self.path, format!("unknown date column encoding {t}"))),
        }
    }
    fn bitmaps(&mut self) -> Result<HashMap<i64, RoaringBitmap>> {
        let n = self.len(16)?;
        let mut m = HashMap::with_capacity(n);
        for _ in 0..n {
            let k = self.u64()? as i64;
            let size = self.len(1)?;
            let bytes = self.take(size)?;
            let b = RoaringBitmap::deserialize_from(&bytes[..])
                .map_err(|e| bad(&self.path, format!("bitmap: {e}")))?;
            m.insert(k, b);
        }
        Ok(m)
    }
    fn bools(&mut self) -> Result<Vec<bool>> {
        let n = self.len(1)?;
        Ok(self.take(n)?.iter().map(|&b| b != 0).collect())
    }
    fn done(&self) -> Result<()> {
        if self.pos != self.size {
            return Err(bad(&self.path, "trailing bytes"));
        }
        Ok(())
    }
}

fn pairs(m: &HashMap<i64, i64>) -> (Vec<i64>, Vec<i64>) {
    let mut kv: Vec<(i64, i64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
    kv.sort_unstable();
    kv.into_iter().unzip()
}

fn multimap(m: &HashMap<i64, Vec<i64>>) -> (Vec<i64>, Vec<i64>) {
    let mut kv: Vec<(i64, i64)> = m
        .iter()
        .flat_map(|(k, v)| v.iter().map(|x| (*k, *x)))
        .collect();
    kv.sort_unstable();
    kv.into_iter().unzip()
}

/// Writes the index of a loaded CDM into `dir` (replacing it).
pub fn save(cdm: &Cdm, dir: &Path) -> Result<()> {
    let tmp = staging(dir)?;
    let mut rows = Vec::new();
    for (domain, name) in DOMAINS {
        let t = cdm.table(*domain);
        write_table(&tmp, name, t, cdm.concept_index(*domain))?;
        rows.push((*name, t.len()));
    }
    write_common(cdm, &tmp, &rows)?;
    commit(&tmp, dir)
}

/// Builds the index of the CDM in the folder `cdm_dir` straight into `dir`
/// (replacing it), one table at a time, so that the build never holds more
/// than one event table in memory. Read it with [`load`].
pub fn build(cdm_dir: &Path, dir: &Path) -> Result<()> {
    let tmp = staging(dir)?;
    let mut rows: Vec<(&str, usize)> = Vec::new();
    let cdm = Cdm::load_each(cdm_dir, &mut |domain, t, idx| {
        let name = DOMAINS
            .iter()
            .find(|(d, _)| *d == domain)
            .map_or("unknown", |(_, n)| n);
        write_table(&tmp, name, t, idx)?;
        rows.push((name, t.len()));
        Ok(false)
    })?;
    // (Every domain is handed over, an absent table as an empty one.)
    rows.sort_by_key(|(n, _)| DOMAINS.iter().position(|(_, m)| m == n));
    write_common(&cdm, &tmp, &rows)?;
    commit(&tmp, dir)
}

/// A fresh staging folder next to `dir`.
fn staging(dir: &Path) -> Result<PathBuf> {
    let tmp = PathBuf::from(format!("{}.tmp-{}", dir.display(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    Ok(tmp)
}

/// Replaces `dir` with the staging folder `tmp`.
fn commit(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
    }
    std::fs::rename(tmp, dir).map_err(io_err(dir))
}

/// Writes one event table and its bitmaps.
fn write_table(tmp: &Path, name: &str, t: &EventTable, idx: &ConceptIndex) -> Result<()> {
    let mut w = Writer::create(tmp.join(format!("{name}.bin")))?;
    w.u32s(&t.person)?;
    w.i64s(&t.clusters)?;
    w.u32s(&t.bounds)?;
    w.u32s(&t.offsets)?;
    w.i64s(&t.cross_sources)?;
    w.u32s(&t.cross_bounds)?;
    w.u32s(&t.cross_rows)?;
    w.days(&t.start)?;
    w.ids(&t.id)?;
    w.days(&t.end)?;
    w.ids(&t.source)?;
    w.ids(&t.type_concept)?;
    w.ids(&t.visit)?;
    w.ids(&t.provider)?;
    let extras: Vec<(u8, &ExtraColumn)> = EXTRAS
        .iter()
        .filter_map(|(e, code)| t.extras.get(e).map(|c| (*code, c)))
        .collect();
    w.u64(extras.len() as u64)?;
    for (code, col) in extras {
        match col {
            ExtraColumn::Id(v) => {
                w.bytes(&[code, 0])?;
                w.ids(v)?;
            }
            ExtraColumn::Num(v) => {
                w.bytes(&[code, 1])?;
                w.nums(v)?;
            }
            ExtraColumn::Text(v) => {
                w.bytes(&[code, 2])?;
                w.u64(v.dict.len() as u64)?;
                for d in &v.dict {
                    w.u64(d.len() as u64)?;
                    w.bytes(d.as_bytes())?;
                }
                w.ids(&v.codes)?;
            }
        }
    }
    w.finish()?;
    let mut w = Writer::create(tmp.join(format!("{name}.bitmaps")))?;
    let mut any = HashMap::new();
    any.insert(0, idx.any.clone());
    w.bitmaps(&any)?;
    w.bitmaps(&idx.concept)?;
    w.bitmaps(&idx.source)?;
    w.finish()
}

/// Writes persons, vocabulary, look-ups and the manifest.
fn write_common(cdm: &Cdm, tmp: &Path, rows: &[(&str, usize)]) -> Result<()> {
    let p = &cdm.persons;
    let mut w = Writer::create(tmp.join("persons.bin"))?;
    w.i64s(&p.id)?;
    w.u64(p.in_person_table.len() as u64)?;
    let flags: Vec<u8> = p.in_person_table.iter().map(|&b| u8::from(b)).collect();
    w.bytes(&flags)?;
    w.i64s(&p.year_of_birth)?;
    w.i64s(&p.gender)?;
    w.i64s(&p.race)?;
    w.i64s(&p.ethnicity)?;
    w.finish()?;

    let v = &cdm.vocabulary;
    let mut w = Writer::create(tmp.join("vocabulary.bin"))?;
    let mut concepts: Vec<(i64, bool)> = v.concept_valid.iter().map(|(k, b)| (*k, *b)).collect();
    concepts.sort_unstable();
    w.i64s(&concepts.iter().map(|c| c.0).collect::<Vec<_>>())?;
    w.u64(concepts.len() as u64)?;
    w.bytes(&concepts.iter().map(|c| u8::from(c.1)).collect::<Vec<_>>())?;
    let (a, d) = multimap(&v.descendants);
    w.i64s(&a)?;
    w.i64s(&d)?;
    let (t, s) = multimap(&v.mapped_from);
    w.i64s(&t)?;
    w.i64s(&s)?;
    w.finish()?;

    let mut w = Writer::create(tmp.join("lookups.bin"))?;
    let (k, v) = pairs(&cdm.provider_specialty);
    w.i64s(&k)?;
    w.i64s(&v)?;
    let (k, v) = pairs(&cdm.care_site_place);
    w.i64s(&k)?;
    w.i64s(&v)?;
    w.finish()?;

    let manifest = serde_json::json!({
        "format": "omop-cohort index",
        "version": FORMAT_VERSION,
        "source": cdm.dir.display().to_string(),
        "persons": cdm.persons.id.len(),
        "tables": rows.iter().map(|(n, r)| serde_json::json!({"name": n, "rows": r})).collect::<Vec<_>>(),
    });
    let mpath = tmp.join("manifest.json");
    std::fs::write(
        &mpath,
        serde_json::to_string_pretty(&manifest).unwrap_or_default(),
    )
    .map_err(io_err(&mpath))
}

/// Whether `dir` holds an index (a manifest).
pub fn exists(dir: &Path) -> bool {
    dir.join("manifest.json").is_file()
}

/// Reads an index written by [`save`].
pub fn load(dir: &Path) -> Result<Cdm> {
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(io_err(&mpath))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad(&mpath, format!("manifest is not JSON: {e}")))?;
    let version = manifest.get("version").and_then(|v| v.as_u64());
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(bad(
            &mpath,
            match version {
                Some(v) => format!(
                    "format version {v}, expected {FORMAT_VERSION}; rebuild the index (delete the folder and run again)"
                ),
                None => format!(
                    "no format version, expected {FORMAT_VERSION}; rebuild the index (delete the folder and run again)"
                ),
            },
        ));
    }
    let source = manifest
        .get("source")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .unwrap_or_default();

    let mut r = Reader::open(dir.join("persons.bin"))?;
    let id = r.i64s()?;
    let in_person_table = r.bools()?;
    let persons = Persons {
        year_of_birth: r.i64s()?,
        gender: r.i64s()?,
        race: r.i64s()?,
        ethnicity: r.i64s()?,
        in_person_table,
        id,
    };
    r.done()?;
    let n = persons.id.len();
    if [
        persons.in_person_table.len(),
        persons.year_of_birth.len(),
        persons.gender.len(),
        persons.race.len(),
        persons.ethnicity.len(),
    ]
    .iter()
    .any(|&l| l != n)
    {
        return Err(bad(&r.path, "person columns differ in length"));
    }

    let mut r = Reader::open(dir.join("vocabulary.bin"))?;
    let ids = r.i64s()?;
    let valid = r.bools()?;
    if ids.len() != valid.len() {
        return Err(bad(&r.path, "concept columns differ in length"));
    }
    let mut vocabulary = Vocabulary {
        concept_valid: ids.into_iter().zip(valid).collect(),
        ..Vocabulary::default()
    };
    let (a, d) = (r.i64s()?, r.i64s()?);
    for (a, d) in a.into_iter().zip(d) {
        vocabulary.descendants.entry(a).or_default().push(d);
    }
    let (t, s) = (r.i64s()?, r.i64s()?);
    for (t, s) in t.into_iter().zip(s) {
        vocabulary.mapped_from.entry(t).or_default().push(s);
    }
    r.done()?;

    let mut r = Reader::open(dir.join("lookups.bin"))?;
    let provider_specialty = r.i64s()?.into_iter().zip(r.i64s()?).collect();
    let care_site_place = r.i64s()?.into_iter().zip(r.i64s()?).collect();
    r.done()?;

    let loaded: Vec<(Domain, EventTable, ConceptIndex)> = DOMAINS
        .par_iter()
        .map(|(domain, name)| {
            let (t, idx) = load_table(dir, name, n)?;
            Ok((*domain, t, idx))
        })
        .collect::<Result<_>>()?;
    let (tables, index): (Vec<_>, Vec<_>) = loaded
        .into_iter()
        .map(|(d, t, idx)| ((d, t), (d, idx)))
        .unzip();
    let (tables, index) = (by_domain(tables), by_domain(index));
    let core = PersonCore::build(&persons, &tables[Domain::ObservationPeriod as usize]);
    Ok(Cdm {
        dir: source,
        persons,
        tables,
        index,
        provider_specialty,
        care_site_place,
        vocabulary,
        core,
    })
}

fn load_table(dir: &Path, name: &str, n: usize) -> Result<(EventTable, ConceptIndex)> {
    let mut r = Reader::open(dir.join(format!("{name}.bin")))?;
    let mut t = EventTable {
        person: r.u32s()?,
        clusters: r.i64s()?,
        bounds: r.u32s()?,
        offsets: r.u32s()?,
        cross_sources: r.i64s()?,
        cross_bounds: r.u32s()?,
        cross_rows: r.u32s()?,
        start: r.days()?,
        id: r.ids()?,
        end: r.days()?,
        source: r.ids()?,
        type_concept: r.ids()?,
        visit: r.ids()?,
        provider: r.ids()?,
        extras: HashMap::new(),
    };
    let n_extras = r.u64()?;
    for _ in 0..n_extras {
        let tag = r.take(2)?;
        let extra = EXTRAS
            .iter()
            .find(|(_, c)| *c == tag[0])
            .map(|(e, _)| *e)
            .ok_or_else(|| bad(&r.path, format!("unknown column code {}", tag[0])))?;
        let col = match tag[1] {
            0 => ExtraColumn::Id(r.ids()?),
            1 => ExtraColumn::Num(r.nums()?),
            2 => {
                let n = r.len(8)?;
                let mut dict = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = r.len(1)?;
                    let bytes = r.take(len)?;
                    dict.push(
                        String::from_utf8(bytes)
                            .map_err(|_| bad(&r.path, "a text value is not UTF-8"))?,
                    );
                }
                ExtraColumn::Text(Texts {
                    dict,
                    codes: r.ids()?,
                })
            }
            kind => return Err(bad(&r.path, format!("unknown column kind {kind}"))),
        };
        t.extras.insert(extra, col);
    }
    r.done()?;
    let rows = t.len();
    let ids_ok = |c: &Ids| c.stored_len().is_none_or(|l| l == rows) && c.is_consistent();
    let days_ok = |c: &Days| c.stored_len().is_none_or(|l| l == rows) && c.is_consistent();
    let lengths_ok = t.layout_is_consistent(n)
        && days_ok(&t.start)
        && days_ok(&t.end)
        && [&t.id, &t.source, &t.type_concept, &t.visit, &t.provider]
            .into_iter()
            .all(ids_ok)
        && t.extras.values().all(|c| match c {
            ExtraColumn::Id(v) => ids_ok(v),
            ExtraColumn::Num(Nums::Whole(v)) => ids_ok(v),
            ExtraColumn::Num(Nums::Float(v)) => v.len() == rows,
            ExtraColumn::Text(v) => ids_ok(&v.codes) && v.is_consistent(),
        });
    if !lengths_ok {
        return Err(bad(
            &r.path,
            "columns, clusters or person offsets are inconsistent",
        ));
    }
    let mut r = Reader::open(dir.join(format!("{name}.bitmaps")))?;
    let any = r.bitmaps()?.remove(&0).unwrap_or_default();
    let concept = r.bitmaps()?;
    let source = r.bitmaps()?;
    r.done()?;
    let out_of_range = |b: &RoaringBitmap| b.max().is_some_and(|m| m as usize >= n);
    if out_of_range(&any) || concept.values().any(out_of_range) || source.values().any(out_of_range)
    {
        return Err(bad(&r.path, "bitmap refers to a person outside the index"));
    }
    Ok((
        t,
        ConceptIndex {
            concept,
            source,
            any,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_of_another_format_asks_for_a_rebuild() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("manifest.json"), r#"{"version": 4}"#).expect("manifest");
        let err = load(dir.path()).expect_err("old format").to_string();
        assert!(
            err.contains(&format!("format version 4, expected {FORMAT_VERSION}"))
                && err.contains("rebuild the index"),
            "{err}"
        );
        std::fs::write(dir.path().join("manifest.json"), "{}").expect("manifest");
        let err = load(dir.path()).expect_err("no version").to_string();
        assert!(err.contains("no format version"), "{err}");
    }
}
