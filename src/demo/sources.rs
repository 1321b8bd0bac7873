//! A deterministic generator of Synthea v3.0-shaped source CSV files.
//!
//! Each patient gets a life story drawn from a random generator seeded with the run's seed
//! and the patient's number, so patient `i` has the same story whatever the number of
//! patients (only the clinics and hospitals it happens in vary), and the same seed always
//! gives byte-identical files. The story is coarse but coherent:
//! yearly wellness visits with vital signs, screening procedures and vaccinations; chronic
//! conditions (hypertension, type 2 diabetes, hyperlipidemia, asthma, coronary disease) with
//! follow-up visits, laboratory values and repeat prescriptions; acute infections with
//! antibiotics; emergencies (myocardial infarction with a stent, gastrointestinal bleeding,
//! stroke); a few allergies; and, for some older patients, a death with its certification
//! encounter.
//!
//! Nothing in the files identifies anyone: names are made-up syllables, streets are invented,
//! `SSN` is the never-issued `999-00-0000` for everyone, `DRIVERS` and `PASSPORT` are empty.

use super::codes::{self, Code};
use super::{CsvFile, DemoError};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::collections::BTreeSet;
use std::path::Path;

type Rng = Pcg64Mcg;

/// The last day of the simulated history. Fixed, so that the output does not depend on the
/// day the generator runs.
fn end_of_history() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 6, 30)
        .unwrap_or_default()
        .and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default())
}

/// Years of detailed history before [`end_of_history`].
const HISTORY_YEARS: i64 = 10;

/// The same value for every patient, from a range that is never issued.
const FAKE_SSN: &str = "999-00-0000";

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Data rows (header excluded) per file name, in file-name order.
    pub rows: Vec<(String, u64)>,
    /// Patients with a death date.
    pub deaths: usize,
}

/// The header of each file, exactly as Synthea v3.0 writes it.
const PATIENTS: &str = "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,LAST,SUFFIX,MAIDEN,MARITAL,RACE,ETHNICITY,GENDER,BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,ZIP,LAT,LON,HEALTHCARE_EXPENSES,HEALTHCARE_COVERAGE";
const ENCOUNTERS: &str = "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,BASE_ENCOUNTER_COST,TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION";
const CONDITIONS: &str = "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION";
const MEDICATIONS: &str = "START,STOP,PATIENT,PAYER,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,PAYER_COVERAGE,DISPENSES,TOTALCOST,REASONCODE,REASONDESCRIPTION";
const IMMUNIZATIONS: &str = "DATE,PATIENT,ENCOUNTER,CODE,DESCRIPTION,BASE_COST";
const OBSERVATIONS: &str = "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE";
const PROCEDURES: &str =
    "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,REASONCODE,REASONDESCRIPTION";
const ALLERGIES: &str = "START,STOP,PATIENT,ENCOUNTER,CODE,SYSTEM,DESCRIPTION,TYPE,CATEGORY,REACTION1,DESCRIPTION1,SEVERITY1,REACTION2,DESCRIPTION2,SEVERITY2";
const DEVICES: &str = "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION,UDI";
const ORGANIZATIONS: &str = "Id,NAME,ADDRESS,CITY,STATE,ZIP,LAT,LON,PHONE,REVENUE,UTILIZATION";
const PROVIDERS: &str =
    "Id,ORGANIZATION,NAME,GENDER,SPECIALITY,ADDRESS,CITY,STATE,ZIP,LAT,LON,UTILIZATION";

/// Massachusetts towns: name, county, ZIP, latitude, longitude.
const TOWNS: &[(&str, &str, &str, f64, f64)] = &[
    ("Boston", "Suffolk County", "02118", 42.3601, -71.0589),
    ("Worcester", "Worcester County", "01608", 42.2626, -71.8023),
    ("Springfield", "Hampden County", "01103", 42.1015, -72.5898),
    ("Cambridge", "Middlesex County", "02139", 42.3736, -71.1097),
    ("Lowell", "Middlesex County", "01852", 42.6334, -71.3162),
    ("Brockton", "Plymouth County", "02301", 42.0834, -71.0184),
    ("New Bedford", "Bristol County", "02740", 41.6362, -70.9342),
    ("Quincy", "Norfolk County", "02169", 42.2529, -71.0023),
    ("Lynn", "Essex County", "01901", 42.4668, -70.9495),
    ("Fall River", "Bristol County", "02720", 41.7015, -71.1550),
    ("Pittsfield", "Berkshire County", "01201", 42.4501, -73.2454),
    (
        "Barnstable",
        "Barnstable County",
        "02630",
        41.7003,
        -70.3002,
    ),
    (
        "Northampton",
        "Hampshire County",
        "01060",
        42.3251,
        -72.6412,
    ),
    ("Salem", "Essex County", "01970", 42.5195, -70.8967),
];

const SYLLABLES: &[&str] = &[
    "ka", "lo", "ren", "mi", "sa", "tor", "vel", "an", "bri", "da", "el", "fo", "gan", "hal", "is",
    "jo", "ker", "lin", "mor", "na", "os", "pel", "quin", "ra", "sel", "tam", "ul", "ver", "wen",
    "ya", "zel",
];
const STREET_KINDS: &[&str] = &["Street", "Road", "Avenue", "Lane", "Way", "Court", "Drive"];

/// Race as Synthea writes it, with its share of the demo population.
const RACES: &[(&str, f64)] = &[
    ("white", 0.70),
    ("black", 0.12),
    ("asian", 0.07),
    ("hawaiian", 0.01),
    ("native", 0.01),
    ("other", 0.09),
];

/// Writes the eleven source files into `out` (created if needed) for `patients` patients.
/// The same `seed` always gives byte-identical files.
pub fn generate(out: &Path, patients: usize, seed: u64) -> Result<Generated, DemoError> {
    std::fs::create_dir_all(out).map_err(|e| DemoError::io(out, e))?;
    let mut setup = stream(seed, 0, 0);
    let orgs = organizations(&mut setup, patients);
    let mut payer_ids = stream(seed, 3, 0);
    let payers: Vec<String> = (0..4).map(|_| uuid(&mut payer_ids)).collect();
    let mut files = Files {
        patients: CsvFile::create(out, "patients.csv", PATIENTS)?,
        encounters: CsvFile::create(out, "encounters.csv", ENCOUNTERS)?,
        conditions: CsvFile::create(out, "conditions.csv", CONDITIONS)?,
        medications: CsvFile::create(out, "medications.csv", MEDICATIONS)?,
        immunizations: CsvFile::create(out, "immunizations.csv", IMMUNIZATIONS)?,
        observations: CsvFile::create(out, "observations.csv", OBSERVATIONS)?,
        procedures: CsvFile::create(out, "procedures.csv", PROCEDURES)?,
        allergies: CsvFile::create(out, "allergies.csv", ALLERGIES)?,
        devices: CsvFile::create(out, "devices.csv", DEVICES)?,
    };
    let mut world = World {
        orgs,
        payers,
        org_use: Vec::new(),
        provider_use: Vec::new(),
    };
    world.org_use = vec![0; world.orgs.len()];
    world.provider_use = world
        .orgs
        .iter()
        .map(|o| vec![0; o.providers.len()])
        .collect();

    let mut deaths = 0;
    for i in 0..patients {
        // The patient's story and the places it happens in come from separate streams, so
        // that the story does not depend on how many organizations there are.
        let mut rng = stream(seed, 1, i as u64);
        let mut place = stream(seed, 2, i as u64);
        let p = Patient::draw(&mut rng, &mut place, &world);
        if p.death.is_some() {
            deaths += 1;
        }
        p.write(&mut rng, place, &mut world, &mut files)?;
    }

    let mut org_file = CsvFile::create(out, "organizations.csv", ORGANIZATIONS)?;
    let mut prov_file = CsvFile::create(out, "providers.csv", PROVIDERS)?;
    for (oi, o) in world.orgs.iter().enumerate() {
        let (lat, lon) = (format!("{:.6}", o.lat), format!("{:.6}", o.lon));
        let town = o.town.to_uppercase();
        org_file.row(&[
            &o.id,
            &o.name,
            &o.address,
            &town,
            "MA",
            o.zip,
            &lat,
            &lon,
            &o.phone,
            "0.0",
            &world.org_use[oi].to_string(),
        ])?;
        for (pi, pr) in o.providers.iter().enumerate() {
            let used = world.provider_use[oi][pi].to_string();
            prov_file.row(&[
                &pr.id,
                &o.id,
                &pr.name,
                pr.gender,
                pr.speciality,
                &o.address,
                &town,
                "MA",
                o.zip,
                &lat,
                &lon,
                &used,
            ])?;
        }
    }
    let Files {
        patients,
        encounters,
        conditions,
        medications,
        immunizations,
        observations,
        procedures,
        allergies,
        devices,
    } = files;
    let mut rows = Vec::new();
    for f in [
        patients,
        encounters,
        conditions,
        medications,
        immunizations,
        observations,
        procedures,
        allergies,
        devices,
        org_file,
        prov_file,
    ] {
        rows.push(f.finish()?);
    }
    rows.sort();
    Ok(Generated { rows, deaths })
}

/// A random generator for one purpose (`kind`) and one item (`index`) of a run.
fn stream(seed: u64, kind: u64, index: u64) -> Rng {
    let mut z =
        seed ^ kind.wrapping_mul(0xA076_1D64_78BD_642F) ^ index.wrapping_mul(0xE703_7ED1_A0B4_28DB);
    // splitmix64 finaliser: nearby seeds give unrelated streams.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Pcg64Mcg::seed_from_u64(z ^ (z >> 31))
}

struct Files {
    patients: CsvFile,
    encounters: CsvFile,
    conditions: CsvFile,
    medications: CsvFile,
    immunizations: CsvFile,
    observations: CsvFile,
    procedures: CsvFile,
    allergies: CsvFile,
    devices: CsvFile,
}

struct Provider {
    id: String,
    name: String,
    gender: &'static str,
    speciality: &'static str,
}

struct Org {
    id: String,
    name: String,
    hospital: bool,
    address: String,
    town: &'static str,
    zip: &'static str,
    lat: f64,
    lon: f64,
    phone: String,
    providers: Vec<Provider>,
}

struct World {
    orgs: Vec<Org>,
    payers: Vec<String>,
    org_use: Vec<u64>,
    provider_use: Vec<Vec<u64>>,
}

/// One hospital per four organizations, the rest clinics; about one organization per 40 patients.
fn organizations(rng: &mut Rng, patients: usize) -> Vec<Org> {
    let n = (patients / 40).clamp(4, 400);
    (0..n)
        .map(|i| {
            let hospital = i % 4 == 0;
            let (town, _, zip, lat, lon) = TOWNS[i % TOWNS.len()];
            let word = capitalised(&syllables(rng, 2));
            let name = if hospital {
                format!("{} {} HOSPITAL", word.to_uppercase(), town.to_uppercase())
            } else {
                format!(
                    "{} HEALTH CENTER {}",
                    town.to_uppercase(),
                    i / TOWNS.len() + 1
                )
            };
            let address = format!(
                "{} {} {}",
                rng.random_range(1..2000),
                word.to_uppercase(),
                pick(rng, STREET_KINDS).to_uppercase()
            );
            let providers = (0..if hospital { 6 } else { 3 })
                .map(|j| {
                    let gender = if rng.random_bool(0.5) { "M" } else { "F" };
                    let speciality = if hospital && j % 2 == 1 {
                        "EMERGENCY MEDICINE"
                    } else {
                        "GENERAL PRACTICE"
                    };
                    Provider {
                        id: uuid(rng),
                        name: person_name(rng),
                        gender,
                        speciality,
                    }
                })
                .collect();
            Org {
                id: uuid(rng),
                name,
                hospital,
                address,
                town,
                zip,
                lat: lat + rng.random_range(-0.02..0.02),
                lon: lon + rng.random_range(-0.02..0.02),
                phone: format!(
                    "{}555{:04}",
                    600 + rng.random_range(0..399),
                    rng.random_range(100..200)
                ),
                providers,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------- the patient

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Chronic {
    Hypertension,
    Diabetes,
    Hyperlipidemia,
    Asthma,
    CoronaryDisease,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Acute {
    Pharyngitis,
    Bronchitis,
    Sinusitis,
    OtitisMedia,
    Stress,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Emergency {
    MyocardialInfarction,
    GiBleeding,
    Stroke,
}

/// A planned encounter; sorted by time before it is written.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Visit {
    Wellness,
    /// A chronic condition: diagnosed (first visit) or followed up; prescriptions last until
    /// the next follow-up (`until`), or stay open.
    Chronic {
        condition: Chronic,
        first: bool,
        until: Option<NaiveDateTime>,
    },
    Acute(Acute),
    Emergency(Emergency),
    Death,
}

struct Patient {
    id: String,
    birth: NaiveDate,
    death: Option<NaiveDateTime>,
    male: bool,
    race: &'static str,
    hispanic: bool,
    town: usize,
    address: String,
    clinic: usize,
    provider: usize,
    smoking: &'static str,
    bmi: f64,
    adult_height: f64,
    /// The drug added to lisinopril if the patient has hypertension.
    second_bp_drug: Option<Code>,
    chronic: Vec<(Chronic, NaiveDateTime)>,
    allergies: Vec<Code>,
    alcohol: bool,
    visits: Vec<(NaiveDateTime, Visit)>,
}

impl Patient {
    fn draw(rng: &mut Rng, place: &mut Rng, world: &World) -> Patient {
        let end = end_of_history();
        let age_band = rng.random::<f64>();
        let age_years = if age_band < 0.22 {
            rng.random_range(0..18)
        } else if age_band < 0.78 {
            rng.random_range(18..65)
        } else {
            rng.random_range(65..95)
        };
        let birth = end.date() - Duration::days(age_years * 365 + rng.random_range(30..365));
        let male = rng.random_bool(0.49);
        let race = weighted(rng, RACES);
        let hispanic = rng.random_bool(0.12);
        let town = rng.random_range(0..TOWNS.len());
        let address = street_address(rng);
        let clinics: Vec<usize> = (0..world.orgs.len())
            .filter(|i| !world.orgs[*i].hospital)
            .collect();
        let clinic = *pick(place, &clinics);
        let provider = place.random_range(0..world.orgs[clinic].providers.len());
        let smoking = if age_years < 18 {
            ""
        } else {
            *weighted(
                rng,
                &[
                    ("Never smoker", 0.62),
                    ("Former smoker", 0.23),
                    ("Every day smoker", 0.15),
                ],
            )
        };
        let bmi = if age_years < 18 {
            0.0
        } else {
            normal(rng, 27.5, 5.0).clamp(17.5, 48.0)
        };
        let adult_height = if male {
            normal(rng, 176.0, 7.0)
        } else {
            normal(rng, 163.0, 6.5)
        };
        let second_bp_drug = *weighted(
            rng,
            &[
                (Some(codes::HYDROCHLOROTHIAZIDE), 0.35),
                (Some(codes::AMLODIPINE), 0.3),
                (None, 0.35),
            ],
        );

        // Death: only older patients, more often the older they are.
        let death = if age_years >= 50
            && rng.random_bool((0.02 + (age_years - 50) as f64 * 0.004).min(0.3))
        {
            let back = rng.random_range(30..HISTORY_YEARS * 365 - 30);
            Some(at(end.date() - Duration::days(back), rng))
        } else {
            None
        };
        let start = at(
            std::cmp::max(birth, end.date() - Duration::days(HISTORY_YEARS * 365)),
            rng,
        );
        let last = death.unwrap_or(end);
        let age_at_last = years_between(birth, last.date());

        let mut p = Patient {
            id: uuid(rng),
            birth,
            death,
            male,
            race,
            hispanic,
            town,
            address,
            clinic,
            provider,
            smoking,
            bmi,
            adult_height,
            second_bp_drug,
            chronic: Vec::new(),
            allergies: Vec::new(),
            alcohol: age_at_last >= 18 && rng.random_bool(0.05),
            visits: Vec::new(),
        };

        // Chronic conditions, diagnosed inside the history window.
        let chances = [
            (
                Chronic::Hypertension,
                25,
                (0.02 + (age_at_last - 25) as f64 * 0.008).min(0.6),
            ),
            (
                Chronic::Diabetes,
                30,
                (0.01 + (age_at_last - 30) as f64 * 0.004).min(0.25),
            ),
            (
                Chronic::Hyperlipidemia,
                35,
                (0.01 + (age_at_last - 35) as f64 * 0.006).min(0.35),
            ),
            (Chronic::Asthma, 2, 0.08),
            (
                Chronic::CoronaryDisease,
                50,
                (0.01 + (age_at_last - 50) as f64 * 0.003).min(0.2),
            ),
        ];
        for (condition, min_age, chance) in chances {
            if age_at_last >= min_age && rng.random_bool(chance.max(0.0)) {
                let from = std::cmp::max(start, at(add_years(birth, min_age), rng));
                if let Some(onset) = between(rng, from, last - Duration::days(30)) {
                    p.chronic.push((condition, onset));
                }
            }
        }
        if rng.random_bool(0.08) {
            let pool = [
                codes::LATEX,
                codes::MOLD,
                codes::BEE_VENOM,
                codes::PENICILLIN_ALLERGY,
            ];
            let n = rng.random_range(1..=2);
            for _ in 0..n {
                let a = *pick(rng, &pool);
                if !p.allergies.contains(&a) {
                    p.allergies.push(a);
                }
            }
        }
        p.plan(rng, start, last);
        p
    }

    /// Lays out the encounters between `start` and `last`.
    fn plan(&mut self, rng: &mut Rng, start: NaiveDateTime, last: NaiveDateTime) {
        let mut visits = Vec::new();
        // Yearly wellness visits; everyone has at least one visit.
        let span = (last.date() - start.date()).num_days().clamp(1, 300);
        let mut t = start + Duration::days(rng.random_range(0..span));
        if t >= last {
            t = start;
        }
        while t < last {
            visits.push((t, Visit::Wellness));
            t = at(
                t.date() + Duration::days(365 + rng.random_range(-25..25)),
                rng,
            );
        }
        // Emergencies.
        let age = years_between(self.birth, last.date());
        let coronary = self
            .chronic
            .iter()
            .any(|(c, _)| *c == Chronic::CoronaryDisease);
        let mut emergencies = Vec::new();
        if age >= 45 && rng.random_bool(if coronary { 0.35 } else { 0.02 }) {
            emergencies.push(Emergency::MyocardialInfarction);
        }
        if age >= 30 && rng.random_bool(if coronary { 0.12 } else { 0.03 }) {
            emergencies.push(Emergency::GiBleeding);
        }
        if age >= 60 && rng.random_bool(0.03) {
            emergencies.push(Emergency::Stroke);
        }
        for e in emergencies {
            if let Some(when) = between(rng, start, last - Duration::days(10)) {
                visits.push((when, Visit::Emergency(e)));
                // A heart attack starts (or confirms) coronary disease and its aspirin.
                let onset = when + Duration::days(4);
                if e == Emergency::MyocardialInfarction && !coronary && onset < last {
                    self.chronic.push((Chronic::CoronaryDisease, onset));
                }
            }
        }
        // Chronic conditions: a diagnosis visit, then follow-ups about every six months.
        for (condition, onset) in self.chronic.clone() {
            let mut dates = vec![onset];
            let mut t = onset;
            loop {
                t = at(
                    t.date() + Duration::days(182 + rng.random_range(-20..20)),
                    rng,
                );
                if t >= last {
                    break;
                }
                dates.push(t);
            }
            for (i, d) in dates.iter().enumerate() {
                let until = dates.get(i + 1).copied().or(self.death);
                visits.push((
                    *d,
                    Visit::Chronic {
                        condition,
                        first: i == 0,
                        until,
                    },
                ));
            }
        }
        // Acute infections and other short illnesses, year by year.
        let mut y = start;
        while y < last {
            let age = years_between(self.birth, y.date());
            let rate = if age < 12 { 1.4 } else { 0.6 };
            for _ in 0..poisson(rng, rate) {
                let kind = if age < 12 {
                    *weighted(
                        rng,
                        &[
                            (Acute::OtitisMedia, 0.4),
                            (Acute::Pharyngitis, 0.35),
                            (Acute::Bronchitis, 0.15),
                            (Acute::Sinusitis, 0.10),
                        ],
                    )
                } else {
                    *weighted(
                        rng,
                        &[
                            (Acute::Pharyngitis, 0.25),
                            (Acute::Sinusitis, 0.3),
                            (Acute::Bronchitis, 0.25),
                            (Acute::Stress, 0.2),
                        ],
                    )
                };
                let when = y + Duration::days(rng.random_range(0..365));
                if when < last - Duration::days(2) {
                    visits.push((at(when.date(), rng), Visit::Acute(kind)));
                }
            }
            y += Duration::days(365);
        }
        if let Some(d) = self.death {
            visits.push((d, Visit::Death));
        }
        visits.sort();
        self.visits = visits;
    }

    fn age_at(&self, t: NaiveDateTime) -> i64 {
        years_between(self.birth, t.date())
    }

    fn has(&self, c: Chronic, t: NaiveDateTime) -> bool {
        self.chronic.iter().any(|(x, onset)| *x == c && *onset <= t)
    }

    fn write(
        &self,
        rng: &mut Rng,
        place: Rng,
        world: &mut World,
        f: &mut Files,
    ) -> Result<(), DemoError> {
        let (town, county, zip, lat, lon) = TOWNS[self.town];
        let adult = self.age_at(end_of_history()) >= 18;
        let (first, last_name) = (first_name(rng), surname(rng));
        let prefix = if !adult {
            ""
        } else if self.male {
            "Mr."
        } else if rng.random_bool(0.5) {
            "Mrs."
        } else {
            "Ms."
        };
        let marital = if adult {
            *pick(rng, &["M", "S", "M", "D", "W", ""])
        } else {
            ""
        };
        let birthplace = format!("{}  Massachusetts  US", pick(rng, TOWNS).0);
        let expenses = format!("{:.2}", rng.random_range(1_000.0..900_000.0));
        let coverage = format!("{:.2}", rng.random_range(0.0..50_000.0));
        f.patients.row(&[
            &self.id,
            &self.birth.to_string(),
            &self.death.map(|d| d.date().to_string()).unwrap_or_default(),
            FAKE_SSN,
            "",
            "",
            prefix,
            &first,
            &last_name,
            "",
            "",
            marital,
            self.race,
            if self.hispanic {
                "hispanic"
            } else {
                "nonhispanic"
            },
            if self.male { "M" } else { "F" },
            &birthplace,
            &self.address,
            town,
            "Massachusetts",
            county,
            zip,
            &format!("{:.6}", lat + rng.random_range(-0.05..0.05)),
            &format!("{:.6}", lon + rng.random_range(-0.05..0.05)),
            &expenses,
            &coverage,
        ])?;

        let payer = world.payers[rng.random_range(0..world.payers.len())].clone();
        let mut w = Writer {
            p: self,
            place,
            payer,
            files: f,
            given: BTreeSet::new(),
            obesity_recorded: false,
            alcohol_recorded: false,
            allergies_recorded: false,
        };
        for (t, visit) in &self.visits {
            w.visit(rng, world, *t, visit)?;
        }
        // Synthea's quality-of-life summaries: no encounter, codes that are not LOINC.
        let last = std::cmp::max(
            self.death.unwrap_or_else(end_of_history) - Duration::days(1),
            self.birth.and_time(NaiveTime::MIN),
        );
        let age = self.age_at(last) as f64;
        let qols = rng.random_range(0.55..1.0);
        for (c, value, unit) in [
            (codes::QALY, age * qols, "a"),
            (codes::DALY, age * (1.0 - qols) * 0.3, "a"),
            (codes::QOLS, qols, "{score}"),
        ] {
            w.observation_row(last, "", "", c, &format!("{value:.1}"), unit, "numeric")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------- writing visits

struct Writer<'a> {
    p: &'a Patient,
    /// Draws the hospital and doctor of emergencies.
    place: Rng,
    payer: String,
    files: &'a mut Files,
    given: BTreeSet<&'static str>,
    obesity_recorded: bool,
    alcohol_recorded: bool,
    allergies_recorded: bool,
}

/// The encounter being written: its id and start.
struct Enc {
    id: String,
    start: NaiveDateTime,
}

impl Writer<'_> {
    fn visit(
        &mut self,
        rng: &mut Rng,
        world: &mut World,
        t: NaiveDateTime,
        visit: &Visit,
    ) -> Result<(), DemoError> {
        match visit {
            Visit::Wellness => self.wellness(rng, world, t),
            Visit::Chronic {
                condition,
                first,
                until,
            } => self.chronic(rng, world, t, *condition, *first, *until),
            Visit::Acute(kind) => self.acute(rng, world, t, *kind),
            Visit::Emergency(kind) => self.emergency(rng, world, t, *kind),
            Visit::Death => {
                let cause = if self.p.has(Chronic::CoronaryDisease, t) {
                    codes::MYOCARDIAL_INFARCTION
                } else {
                    *pick(
                        rng,
                        &[
                            codes::MYOCARDIAL_INFARCTION,
                            codes::STROKE,
                            codes::GI_BLEEDING,
                        ],
                    )
                };
                let (org, prov) = (self.p.clinic, self.p.provider);
                self.encounter(
                    rng,
                    world,
                    t,
                    Duration::minutes(15),
                    "wellness",
                    ("308646001", "Death Certification"),
                    Some(cause),
                    org,
                    prov,
                )?;
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn encounter(
        &mut self,
        rng: &mut Rng,
        world: &mut World,
        start: NaiveDateTime,
        length: Duration,
        class: &str,
        (code, description): (&str, &str),
        reason: Option<Code>,
        org: usize,
        provider: usize,
    ) -> Result<Enc, DemoError> {
        let id = uuid(rng);
        world.org_use[org] += 1;
        world.provider_use[org][provider] += 1;
        let base = match class {
            "inpatient" => 1_250.0,
            "emergency" => 145.0,
            "wellness" => 129.16,
            _ => 77.49,
        };
        let total = base * rng.random_range(1.0..8.0);
        let (rc, rd) = reason.map_or(("", ""), |c| (c.code, c.description));
        self.files.encounters.row(&[
            &id,
            &datetime(start),
            &datetime(start + length),
            &self.p.id,
            &world.orgs[org].id,
            &world.orgs[org].providers[provider].id,
            &self.payer,
            class,
            code,
            description,
            &format!("{base:.2}"),
            &format!("{total:.2}"),
            &format!("{:.2}", total * rng.random_range(0.0..0.9)),
            rc,
            rd,
        ])?;
        Ok(Enc { id, start })
    }

    fn wellness(
        &mut self,
        rng: &mut Rng,
        world: &mut World,
        t: NaiveDateTime,
    ) -> Result<(), DemoError> {
        let p = self.p;
        let age = p.age_at(t);
        let kind = if age < 18 {
            ("410620009", "Well child visit (procedure)")
        } else {
            ("162673000", "General examination of patient (procedure)")
        };
        let e = self.encounter(
            rng,
            world,
            t,
            Duration::minutes(15),
            "wellness",
            kind,
            None,
            p.clinic,
            p.provider,
        )?;

        // Vital signs.
        let years = (t.date() - p.birth).num_days() as f64 / 365.25;
        let height = if years >= 18.0 {
            p.adult_height
        } else {
            50.0 + (p.adult_height - 50.0) * (years / 18.0).powf(0.6)
        };
        let bmi = if years >= 18.0 {
            (p.bmi + (years - 40.0) * 0.05 + normal(rng, 0.0, 0.6)).clamp(16.0, 55.0)
        } else {
            15.5 + years * 0.2 + normal(rng, 0.0, 1.0)
        };
        let weight = bmi * (height / 100.0).powi(2);
        self.vital(&e, codes::BODY_HEIGHT, height, "cm")?;
        self.vital(&e, codes::BODY_WEIGHT, weight, "kg")?;
        if years >= 2.0 {
            self.vital(&e, codes::BMI, bmi, "kg/m2")?;
        }
        if years >= 3.0 {
            self.blood_pressure(rng, &e)?;
        }
        self.vital(
            &e,
            codes::HEART_RATE,
            normal(rng, if years < 12.0 { 95.0 } else { 74.0 }, 9.0).round(),
            "/min",
        )?;
        self.vital(
            &e,
            codes::RESPIRATORY_RATE,
            rng.random_range(12..20) as f64,
            "/min",
        )?;
        self.vital(
            &e,
            codes::PAIN_SEVERITY,
            rng.random_range(0..5) as f64,
            "{score}",
        )?;
        if !p.smoking.is_empty() && age >= 18 {
            self.observation_row(
                e.start,
                &e.id,
                "survey",
                codes::SMOKING_STATUS,
                p.smoking,
                "",
                "text",
            )?;
        }
        if age >= 20 && rng.random_bool(0.35) {
            self.lab(
                &e,
                codes::CHOLESTEROL,
                rng.random_range(140.0..260.0),
                "mg/dL",
            )?;
            self.lab(
                &e,
                codes::TRIGLYCERIDES,
                rng.random_range(70.0..250.0),
                "mg/dL",
            )?;
        }
        if !p.has(Chronic::Diabetes, t) && age >= 45 && rng.random_bool(0.2) {
            self.lab(&e, codes::HBA1C, rng.random_range(4.8..6.3), "%")?;
        }

        // Findings recorded once.
        if age >= 18 && bmi >= 30.0 && !self.obesity_recorded {
            self.obesity_recorded = true;
            self.condition(&e, codes::OBESITY, None)?;
        }
        if p.alcohol && age >= 18 && !self.alcohol_recorded {
            self.alcohol_recorded = true;
            self.condition(&e, codes::ALCOHOL_USE, None)?;
        }
        if !p.allergies.is_empty() && !self.allergies_recorded {
            self.allergies_recorded = true;
            for a in &p.allergies {
                self.allergy(rng, &e, *a)?;
            }
        }

        // Screening and care.
        if age >= 18 && rng.random_bool(0.7) {
            self.procedure(&e, Duration::minutes(5), codes::CARE_NEEDS_ASSESSMENT, None)?;
        }
        if age >= 12 && rng.random_bool(0.5) {
            self.procedure(
                &e,
                Duration::minutes(8),
                codes::SUBSTANCE_USE_ASSESSMENT,
                None,
            )?;
        }
        if age >= 12 && rng.random_bool(0.6) {
            self.procedure(&e, Duration::minutes(10), codes::DEPRESSION_SCREENING, None)?;
        }
        if !p.chronic.is_empty() && p.chronic.iter().any(|(_, onset)| *onset <= t) {
            self.procedure(
                &e,
                Duration::minutes(12),
                codes::MEDICATION_RECONCILIATION,
                None,
            )?;
        }
        if age >= 50 && rng.random_bool(0.08) {
            self.procedure(&e, Duration::minutes(40), codes::COLONOSCOPY, None)?;
        }
        self.vaccines(rng, &e, years)
    }

    fn vaccines(&mut self, rng: &mut Rng, e: &Enc, years: f64) -> Result<(), DemoError> {
        // (vaccine, from age, to age): given once in that age band.
        let schedule: &[(Code, f64, f64)] = &[
            (codes::ROTAVIRUS, 0.0, 1.0),
            (codes::DTAP, 0.0, 7.0),
            (codes::IPV, 0.0, 7.0),
            (codes::HIB, 0.0, 5.0),
            (codes::VARICELLA, 1.0, 13.0),
            (codes::HEP_A_PEDIATRIC, 1.0, 18.0),
            (codes::HPV, 11.0, 27.0),
            (codes::MENINGOCOCCAL, 11.0, 19.0),
            (codes::TDAP, 11.0, 19.0),
            (codes::HEP_B_ADULT, 19.0, 60.0),
            (codes::ZOSTER, 50.0, 120.0),
            (codes::PCV13, 65.0, 120.0),
            (codes::PPSV23, 66.0, 120.0),
        ];
        for (vaccine, from, to) in schedule {
            if years >= *from
                && years < *to
                && !self.given.contains(vaccine.code)
                && rng.random_bool(0.7)
            {
                self.given.insert(vaccine.code);
                self.immunization(e, *vaccine)?;
            }
        }
        if years >= 19.0 && rng.random_bool(0.1) {
            self.immunization(e, codes::TD)?;
        }
        if years >= 0.5 && rng.random_bool(0.55) {
            self.immunization(e, codes::FLU)?;
        }
        Ok(())
    }

    fn chronic(
        &mut self,
        rng: &mut Rng,
        world: &mut World,
        t: NaiveDateTime,
        c: Chronic,
        first: bool,
        until: Option<NaiveDateTime>,
    ) -> Result<(), DemoError> {
        let p = self.p;
        let code = match c {
            Chronic::Hypertension => codes::HYPERTENSION,
            Chronic::Diabetes => codes::DIABETES,
            Chronic::Hyperlipidemia => codes::HYPERLIPIDEMIA,
            Chronic::Asthma if p.age_at(t) < 18 => codes::CHILDHOOD_ASTHMA,
            Chronic::Asthma => codes::ASTHMA,
            Chronic::CoronaryDisease => codes::CORONARY_DISEASE,
        };
        let (class, kind) = if first {
            (
                "ambulatory",
                ("185347001", "Encounter for problem (procedure)"),
            )
        } else {
            (
                "outpatient",
                ("390906007", "Follow-up encounter (procedure)"),
            )
        };
        let e = self.encounter(
            rng,
            world,
            t,
            Duration::minutes(20),
            class,
            kind,
            Some(code),
            p.clinic,
            p.provider,
        )?;
        if first {
            self.condition(&e, code, None)?;
        }
        match c {
            Chronic::Hypertension => self.blood_pressure(rng, &e)?,
            Chronic::Diabetes => self.lab(&e, codes::HBA1C, rng.random_range(6.4..9.8), "%")?,
            Chronic::Hyperlipidemia => {
                self.lab(
                    &e,
                    codes::CHOLESTEROL,
                    rng.random_range(200.0..300.0),
                    "mg/dL",
                )?;
                self.lab(
                    &e,
                    codes::TRIGLYCERIDES,
                    rng.random_range(150.0..400.0),
                    "mg/dL",
                )?;
            }
            Chronic::Asthma => self.procedure(
                &e,
                Duration::minutes(15),
                codes::RESPIRATORY_FUNCTION,
                Some(code),
            )?,
            Chronic::CoronaryDisease => {}
        }
        // Repeat prescriptions: the same drugs at every visit of the condition, each lasting
        // until the next one.
        let drugs: Vec<Code> = match c {
            Chronic::Hypertension => std::iter::once(codes::LISINOPRIL)
                .chain(p.second_bp_drug)
                .collect(),
            Chronic::Diabetes => vec![codes::METFORMIN],
            Chronic::Asthma => vec![codes::FLUTICASONE, codes::ALBUTEROL],
            Chronic::CoronaryDisease => vec![codes::ASPIRIN],
            Chronic::Hyperlipidemia => vec![],
        };
        for d in drugs {
            self.medication(rng, &e, d, until, Some(code))?;
        }
        Ok(())
    }

    fn acute(
        &mut self,
        rng: &mut Rng,
        world: &mut World,
        t: NaiveDateTime,
        kind: Acute,
    ) -> Result<(), DemoError> {
        let p = self.p;
        let code = match kind {
            Acute::Pharyngitis => codes::PHARYNGITIS,
            Acute::Bronchitis => codes::BRONCHITIS,
            Acute::Sinusitis => codes::SINUSITIS,
            Acute::OtitisMedia => codes::OTITIS_MEDIA,
            Acute::Stress => codes::STRESS,
        };
        let class = if kind != Acute::Stress && rng.random_bool(0.1) {
            "urgentcare"
        } else {
            "ambulatory"
        };
        let kind_code = if class == "urgentcare" {
            ("702927004", "Urgent care clinic (environment)")
        } else {
            ("185345009", "Encounter for symptom")
        };
        let e = self.encounter(
            rng,
            world,
            t,
            Duration::minutes(15),
            class,
            kind_code,
            Some(code),
            p.clinic,
            p.provider,
        )?;
        let days = rng.random_range(7..21);
        self.condition(&e, code, Some(t + Duration::days(days)))?;
        let course = Some(t + Duration::days(10));
        match kind {
            Acute::Pharyngitis => {
                self.procedure(&e, Duration::minutes(5), codes::THROAT_CULTURE, Some(code))?;
                if rng.random_bool(0.6) {
                    let drug = if rng.random_bool(0.5) {
                        codes::AMOXICILLIN
                    } else {
                        codes::PENICILLIN_V
                    };
                    self.medication(rng, &e, drug, course, Some(code))?;
                }
            }
            Acute::OtitisMedia => {
                self.medication(rng, &e, codes::AMOXICILLIN, course, Some(code))?;
                self.medication(
                    rng,
                    &e,
                    codes::IBUPROFEN,
                    Some(t + Duration::days(5)),
                    Some(code),
                )?;
            }
            Acute::Bronchitis => {
                self.medication(
                    rng,
                    &e,
                    codes::ACETAMINOPHEN,
                    Some(t + Duration::days(7)),
                    Some(code),
                )?;
                if rng.random_bool(0.15) {
                    self.procedure(&e, Duration::minutes(20), codes::CHEST_X_RAY, Some(code))?;
                }
            }
            Acute::Sinusitis => {
                if rng.random_bool(0.5) {
                    self.medication(
                        rng,
                        &e,
                        codes::ACETAMINOPHEN,
                        Some(t + Duration::days(7)),
                        Some(code),
                    )?;
                }
            }
            Acute::Stress => {
                self.procedure(&e, Duration::minutes(30), codes::COUNSELING, Some(code))?
            }
        }
        Ok(())
    }

    fn emergency(
        &mut self,
        rng: &mut Rng,
        world: &mut World,
        t: NaiveDateTime,
        kind: Emergency,
    ) -> Result<(), DemoError> {
        let hospitals: Vec<usize> = (0..world.orgs.len())
            .filter(|i| world.orgs[*i].hospital)
            .collect();
        let org = *pick(&mut self.place, &hospitals);
        let doctor = self.place.random_range(0..world.orgs[org].providers.len());
        let code = match kind {
            Emergency::MyocardialInfarction => codes::MYOCARDIAL_INFARCTION,
            Emergency::GiBleeding => codes::GI_BLEEDING,
            Emergency::Stroke => codes::STROKE,
        };
        let er = self.encounter(
            rng,
            world,
            t,
            Duration::hours(3),
            "emergency",
            ("50849002", "Emergency room admission (procedure)"),
            Some(code),
            org,
            doctor,
        )?;
        self.condition(
            &er,
            code,
            Some(t + Duration::days(rng.random_range(10..30))),
        )?;
        let admitted = kind != Emergency::GiBleeding || rng.random_bool(0.5);
        let stay = if admitted {
            let days = rng.random_range(2..7);
            Some(self.encounter(
                rng,
                world,
                t + Duration::hours(3),
                Duration::days(days),
                "inpatient",
                ("32485007", "Hospital admission (procedure)"),
                Some(code),
                org,
                doctor,
            )?)
        } else {
            None
        };
        let main = stay.as_ref().unwrap_or(&er);
        match kind {
            Emergency::MyocardialInfarction => {
                self.procedure(&er, Duration::minutes(20), codes::CHEST_X_RAY, Some(code))?;
                self.device(rng, main, codes::CORONARY_STENT)?;
            }
            Emergency::GiBleeding => {
                self.procedure(main, Duration::minutes(45), codes::COLONOSCOPY, Some(code))?;
                if rng.random_bool(0.4) {
                    self.condition(main, codes::ANEMIA, Some(t + Duration::days(60)))?;
                }
            }
            Emergency::Stroke => {
                self.procedure(&er, Duration::minutes(20), codes::CHEST_X_RAY, Some(code))?
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------------ row writers

    fn blood_pressure(&mut self, rng: &mut Rng, e: &Enc) -> Result<(), DemoError> {
        let age = self.p.age_at(e.start) as f64;
        let raised = if self.p.has(Chronic::Hypertension, e.start) {
            14.0
        } else {
            0.0
        };
        let systolic = normal(rng, 112.0 + (age - 30.0).max(0.0) * 0.3 + raised, 9.0).round();
        let diastolic = (systolic * 0.64 + normal(rng, 0.0, 5.0)).round();
        self.vital(e, codes::SYSTOLIC_BP, systolic, "mm[Hg]")?;
        self.vital(e, codes::DIASTOLIC_BP, diastolic, "mm[Hg]")
    }

    fn vital(&mut self, e: &Enc, c: Code, value: f64, unit: &str) -> Result<(), DemoError> {
        self.observation_row(
            e.start,
            &e.id,
            "vital-signs",
            c,
            &format!("{value:.1}"),
            unit,
            "numeric",
        )
    }

    fn lab(&mut self, e: &Enc, c: Code, value: f64, unit: &str) -> Result<(), DemoError> {
        self.observation_row(
            e.start,
            &e.id,
            "laboratory",
            c,
            &format!("{value:.1}"),
            unit,
            "numeric",
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn observation_row(
        &mut self,
        t: NaiveDateTime,
        encounter: &str,
        category: &str,
        c: Code,
        value: &str,
        unit: &str,
        kind: &str,
    ) -> Result<(), DemoError> {
        self.files.observations.row(&[
            &datetime(t),
            &self.p.id,
            encounter,
            category,
            c.code,
            c.description,
            value,
            unit,
            kind,
        ])
    }

    fn condition(
        &mut self,
        e: &Enc,
        c: Code,
        stop: Option<NaiveDateTime>,
    ) -> Result<(), DemoError> {
        let stop = stop.map(|s| s.date().to_string()).unwrap_or_default();
        self.files.conditions.row(&[
            &e.start.date().to_string(),
            &stop,
            &self.p.id,
            &e.id,
            c.code,
            c.description,
        ])
    }

    fn procedure(
        &mut self,
        e: &Enc,
        length: Duration,
        c: Code,
        reason: Option<Code>,
    ) -> Result<(), DemoError> {
        let (rc, rd) = reason.map_or(("", ""), |r| (r.code, r.description));
        let cost = 300.0 + (c.code.len() as f64) * 37.5;
        self.files.procedures.row(&[
            &datetime(e.start),
            &datetime(e.start + length),
            &self.p.id,
            &e.id,
            c.code,
            c.description,
            &format!("{cost:.2}"),
            rc,
            rd,
        ])
    }

    fn medication(
        &mut self,
        rng: &mut Rng,
        e: &Enc,
        c: Code,
        stop: Option<NaiveDateTime>,
        reason: Option<Code>,
    ) -> Result<(), DemoError> {
        let (rc, rd) = reason.map_or(("", ""), |r| (r.code, r.description));
        let stop_text = stop.map(datetime).unwrap_or_default();
        let dispenses = stop.map_or(1, |s| ((s - e.start).num_days() / 30).max(1));
        let base = rng.random_range(2.0..120.0);
        self.files.medications.row(&[
            &datetime(e.start),
            &stop_text,
            &self.p.id,
            &self.payer,
            &e.id,
            c.code,
            c.description,
            &format!("{base:.2}"),
            &format!("{:.2}", base * rng.random_range(0.0..0.9)),
            &dispenses.to_string(),
            &format!("{:.2}", base * dispenses as f64),
            rc,
            rd,
        ])
    }

    fn immunization(&mut self, e: &Enc, c: Code) -> Result<(), DemoError> {
        self.files.immunizations.row(&[
            &datetime(e.start),
            &self.p.id,
            &e.id,
            c.code,
            c.description,
            "136.00",
        ])
    }

    fn allergy(&mut self, rng: &mut Rng, e: &Enc, c: Code) -> Result<(), DemoError> {
        let (system, category) = if c.vocabulary == "RxNorm" {
            ("RxNorm", "medication")
        } else {
            ("SNOMED-CT", "environment")
        };
        let reactions = [
            ("418290006", "Itching (finding)"),
            ("271807003", "Eruption of skin (disorder)"),
            ("76067001", "Sneezing"),
            ("247472004", "Wheal (finding)"),
        ];
        let severity = ["MILD", "MODERATE", "SEVERE"];
        let (r1, d1) = *pick(rng, &reactions);
        let s1 = *pick(rng, &severity);
        let second = rng
            .random_bool(0.4)
            .then(|| (*pick(rng, &reactions), *pick(rng, &severity)));
        let ((r2, d2), s2) = second.unwrap_or((("", ""), ""));
        self.files.allergies.row(&[
            &e.start.date().to_string(),
            "",
            &self.p.id,
            &e.id,
            c.code,
            system,
            c.description,
            "allergy",
            category,
            r1,
            d1,
            s1,
            r2,
            d2,
            s2,
        ])
    }

    fn device(&mut self, rng: &mut Rng, e: &Enc, c: Code) -> Result<(), DemoError> {
        let d = e.start.date();
        let expiry = add_years(d, 5);
        let udi = format!(
            "(01){:014}(11){:02}{:02}{:02}(17){:02}{:02}{:02}(10){:08}(21){:010}",
            rng.random_range(0..100_000_000_000_000u64),
            d.year() % 100,
            d.month(),
            d.day(),
            expiry.year() % 100,
            expiry.month(),
            expiry.day(),
            rng.random_range(0..100_000_000u64),
            rng.random_range(0..10_000_000_000u64)
        );
        self.files.devices.row(&[
            &datetime(e.start),
            "",
            &self.p.id,
            &e.id,
            c.code,
            c.description,
            &udi,
        ])
    }
}

// ---------------------------------------------------------------------------- helpers

/// A UUID-looking id (random hex in the 8-4-4-4-12 layout).
fn uuid(rng: &mut Rng) -> String {
    let a: u128 = rng.random();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn weighted<'a, T>(rng: &mut Rng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

/// A normal deviate (Box–Muller).
fn normal(rng: &mut Rng, mean: f64, sd: f64) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Poisson count (Knuth's method; fine for the small rates used here).
fn poisson(rng: &mut Rng, lambda: f64) -> u32 {
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = rng.random::<f64>();
    while p > limit && k < 20 {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

/// A day between `from` and `to` at a time of day, or `None` when the span is empty.
fn between(rng: &mut Rng, from: NaiveDateTime, to: NaiveDateTime) -> Option<NaiveDateTime> {
    let days = (to.date() - from.date()).num_days();
    if days <= 0 {
        return None;
    }
    Some(at(
        from.date() + Duration::days(rng.random_range(0..days)),
        rng,
    ))
}

/// `day` at a daytime clock time, on whole minutes.
fn at(day: NaiveDate, rng: &mut Rng) -> NaiveDateTime {
    let minutes = rng.random_range(7 * 60..19 * 60);
    day.and_time(NaiveTime::MIN) + Duration::minutes(minutes)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as Synthea writes times.
fn datetime(t: NaiveDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn years_between(from: NaiveDate, to: NaiveDate) -> i64 {
    let mut years = i64::from(to.year() - from.year());
    if (to.month(), to.day()) < (from.month(), from.day()) {
        years -= 1;
    }
    years
}

fn add_years(d: NaiveDate, years: i64) -> NaiveDate {
    let y = d.year() + years as i32;
    NaiveDate::from_ymd_opt(y, d.month(), d.day())
        .or_else(|| NaiveDate::from_ymd_opt(y, d.month(), 28))
        .unwrap_or(d)
}

fn syllables(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| *pick(rng, SYLLABLES)).collect()
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Synthea-style made-up names: syllables followed by a number.
fn first_name(rng: &mut Rng) -> String {
    let n = rng.random_range(2..=3);
    format!(
        "{}{}",
        capitalised(&syllables(rng, n)),
        rng.random_range(1..1000)
    )
}

fn surname(rng: &mut Rng) -> String {
    let n = rng.random_range(2..=4);
    format!(
        "{}{}",
        capitalised(&syllables(rng, n)),
        rng.random_range(1..1000)
    )
}

fn person_name(rng: &mut Rng) -> String {
    format!("{} {}", first_name(rng), surname(rng))
}

fn street_address(rng: &mut Rng) -> String {
    let n = rng.random_range(2..=3);
    let street = format!(
        "{} {} {}",
        rng.random_range(1..1000),
        capitalised(&syllables(rng, n)),
        pick(rng, STREET_KINDS)
    );
    if rng.random_bool(0.3) {
        format!("{street} Unit {}", rng.random_range(1..99))
    } else {
        street
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_kind_and_index() {
        let draw = |s, k, i| stream(s, k, i).random::<u64>();
        assert_ne!(draw(1, 1, 0), draw(2, 1, 0));
        assert_ne!(draw(1, 1, 0), draw(1, 1, 1));
        assert_ne!(draw(1, 0, 0), draw(1, 1, 0));
        assert_eq!(draw(7, 1, 3), draw(7, 1, 3));
    }

    #[test]
    fn ids_look_like_uuids() {
        let mut rng = stream(1, 0, 0);
        let id = uuid(&mut rng);
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn ages_count_whole_years() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap_or_default();
        assert_eq!(years_between(d(2000, 5, 10), d(2010, 5, 9)), 9);
        assert_eq!(years_between(d(2000, 5, 10), d(2010, 5, 10)), 10);
        assert_eq!(add_years(d(2000, 2, 29), 1), d(2001, 2, 28));
    }
}
