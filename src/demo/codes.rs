//! The codes the demo generator writes and the OMOP concepts the demo vocabulary gives them.
//!
//! Both halves of the demo read this one file, so the sources and the vocabulary cannot drift
//! apart: every [`Code`] the generator emits has a concept here with the same vocabulary and
//! code, except the few in [`UNMAPPED`], which are left out of the vocabulary on purpose so that
//! the run report's mapping coverage has something to show.
//!
//! Concept ids, names, domains and classes are those of the OHDSI standardized vocabularies.

/// A source code as a Synthea CSV file carries it: the code and its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// The OMOP vocabulary the mapping pack looks the code up in.
    pub vocabulary: &'static str,
    /// The code.
    pub code: &'static str,
    /// The `DESCRIPTION` text written next to it (Synthea style: no commas).
    pub description: &'static str,
}

const fn code(vocabulary: &'static str, code: &'static str, description: &'static str) -> Code {
    Code {
        vocabulary,
        code,
        description,
    }
}

/// One row of the demo vocabulary's `concept` table.
#[derive(Debug, Clone, Copy)]
pub struct Concept {
    /// `concept_id`.
    pub id: i32,
    /// `vocabulary_id`.
    pub vocabulary: &'static str,
    /// `concept_code`.
    pub code: &'static str,
    /// `concept_name`.
    pub name: &'static str,
    /// `domain_id`.
    pub domain: &'static str,
    /// `concept_class_id`.
    pub class: &'static str,
    /// Whether `standard_concept` is `S`.
    pub standard: bool,
}

const fn s(
    id: i32,
    vocabulary: &'static str,
    code: &'static str,
    name: &'static str,
    domain: &'static str,
    class: &'static str,
) -> Concept {
    Concept {
        id,
        vocabulary,
        code,
        name,
        domain,
        class,
        standard: true,
    }
}

const fn ns(
    id: i32,
    vocabulary: &'static str,
    code: &'static str,
    name: &'static str,
    domain: &'static str,
    class: &'static str,
) -> Concept {
    Concept {
        id,
        vocabulary,
        code,
        name,
        domain,
        class,
        standard: false,
    }
}

// ------------------------------------------------------------------ conditions (SNOMED)
pub const HYPERTENSION: Code = code("SNOMED", "59621000", "Essential hypertension (disorder)");
pub const DIABETES: Code = code("SNOMED", "44054006", "Diabetes mellitus type 2 (disorder)");
pub const HYPERLIPIDEMIA: Code = code("SNOMED", "55822004", "Hyperlipidemia (disorder)");
pub const ASTHMA: Code = code("SNOMED", "195967001", "Asthma (disorder)");
pub const CHILDHOOD_ASTHMA: Code = code("SNOMED", "233678006", "Childhood asthma (disorder)");
pub const PHARYNGITIS: Code = code("SNOMED", "195662009", "Acute viral pharyngitis (disorder)");
pub const BRONCHITIS: Code = code("SNOMED", "10509002", "Acute bronchitis (disorder)");
pub const SINUSITIS: Code = code("SNOMED", "444814009", "Viral sinusitis (disorder)");
pub const OTITIS_MEDIA: Code = code("SNOMED", "65363002", "Otitis media (disorder)");
pub const GI_BLEEDING: Code = code(
    "SNOMED",
    "74474003",
    "Gastrointestinal hemorrhage (disorder)",
);
pub const ANEMIA: Code = code("SNOMED", "271737000", "Anemia (disorder)");
pub const MYOCARDIAL_INFARCTION: Code =
    code("SNOMED", "22298006", "Myocardial infarction (disorder)");
pub const CORONARY_DISEASE: Code = code("SNOMED", "53741008", "Coronary heart disease (disorder)");
pub const STROKE: Code = code("SNOMED", "230690007", "Cerebrovascular accident (disorder)");
pub const STRESS: Code = code("SNOMED", "73595000", "Stress (finding)");
/// A finding whose standard concept is in the Observation domain: routed to `observation`.
pub const OBESITY: Code = code(
    "SNOMED",
    "162864005",
    "Body mass index 30+ - obesity (finding)",
);
/// Not in the demo vocabulary on purpose.
pub const ALCOHOL_USE: Code = code(
    "SNOMED",
    "10939881000119104",
    "Unhealthy alcohol drinking behavior (finding)",
);

// ------------------------------------------------------------------ medications (RxNorm)
pub const LISINOPRIL: Code = code("RxNorm", "314076", "lisinopril 10 MG Oral Tablet");
pub const HYDROCHLOROTHIAZIDE: Code =
    code("RxNorm", "310798", "Hydrochlorothiazide 25 MG Oral Tablet");
pub const AMLODIPINE: Code = code("RxNorm", "197361", "amLODIPine 5 MG Oral Tablet");
pub const METFORMIN: Code = code(
    "RxNorm",
    "860975",
    "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
);
pub const FLUTICASONE: Code = code(
    "RxNorm",
    "895994",
    "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
);
pub const ALBUTEROL: Code = code(
    "RxNorm",
    "2123111",
    "NDA020503 200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
);
pub const AMOXICILLIN: Code = code("RxNorm", "308182", "Amoxicillin 250 MG Oral Capsule");
pub const PENICILLIN_V: Code = code(
    "RxNorm",
    "834061",
    "Penicillin V Potassium 250 MG Oral Tablet",
);
pub const ACETAMINOPHEN: Code = code("RxNorm", "313782", "Acetaminophen 325 MG Oral Tablet");
pub const IBUPROFEN: Code = code("RxNorm", "310965", "Ibuprofen 200 MG Oral Tablet");
pub const ASPIRIN: Code = code("RxNorm", "243670", "Aspirin 81 MG Oral Tablet");

// ------------------------------------------------------------------ immunizations (CVX)
pub const FLU: Code = code(
    "CVX",
    "140",
    "Influenza  seasonal  injectable  preservative free",
);
pub const TD: Code = code("CVX", "113", "Td (adult) preservative free");
pub const TDAP: Code = code("CVX", "115", "Tdap");
pub const PCV13: Code = code("CVX", "133", "Pneumococcal conjugate PCV 13");
pub const PPSV23: Code = code(
    "CVX",
    "33",
    "pneumococcal polysaccharide vaccine  23 valent",
);
pub const ZOSTER: Code = code("CVX", "121", "zoster");
pub const HEP_B_ADULT: Code = code("CVX", "43", "Hep B  adult");
pub const HPV: Code = code("CVX", "62", "HPV  quadrivalent");
pub const DTAP: Code = code("CVX", "20", "DTaP");
pub const IPV: Code = code("CVX", "10", "IPV");
pub const HIB: Code = code("CVX", "49", "Hib (PRP-OMP)");
pub const ROTAVIRUS: Code = code("CVX", "119", "rotavirus  monovalent");
pub const VARICELLA: Code = code("CVX", "21", "varicella");
pub const HEP_A_PEDIATRIC: Code = code("CVX", "83", "Hep A  ped/adol  2 dose");
pub const MENINGOCOCCAL: Code = code("CVX", "114", "meningococcal MCV4P");

// ------------------------------------------------------------------ observations (LOINC)
pub const BODY_HEIGHT: Code = code("LOINC", "8302-2", "Body Height");
pub const BODY_WEIGHT: Code = code("LOINC", "29463-7", "Body Weight");
pub const BMI: Code = code("LOINC", "39156-5", "Body mass index (BMI) [Ratio]");
pub const SYSTOLIC_BP: Code = code("LOINC", "8480-6", "Systolic Blood Pressure");
pub const DIASTOLIC_BP: Code = code("LOINC", "8462-4", "Diastolic Blood Pressure");
pub const HEART_RATE: Code = code("LOINC", "8867-4", "Heart rate");
pub const RESPIRATORY_RATE: Code = code("LOINC", "9279-1", "Respiratory rate");
pub const PAIN_SEVERITY: Code = code(
    "LOINC",
    "72514-3",
    "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
);
pub const HBA1C: Code = code(
    "LOINC",
    "4548-4",
    "Hemoglobin A1c/Hemoglobin.total in Blood",
);
pub const CHOLESTEROL: Code = code(
    "LOINC",
    "2093-3",
    "Cholesterol [Mass/volume] in Serum or Plasma",
);
pub const TRIGLYCERIDES: Code = code("LOINC", "2571-8", "Triglycerides");
/// A text answer whose standard concept is in the Observation domain.
pub const SMOKING_STATUS: Code = code("LOINC", "72166-2", "Tobacco smoking status NHIS");
/// Synthea's own quality-of-life codes: not LOINC, so unmapped on purpose.
pub const QALY: Code = code("LOINC", "QALY", "QALY");
/// See [`QALY`].
pub const DALY: Code = code("LOINC", "DALY", "DALY");
/// See [`QALY`].
pub const QOLS: Code = code("LOINC", "QOLS", "QOLS");

// ------------------------------------------------------------------ procedures (SNOMED)
pub const MEDICATION_RECONCILIATION: Code = code(
    "SNOMED",
    "430193006",
    "Medication Reconciliation (procedure)",
);
pub const CARE_NEEDS_ASSESSMENT: Code = code(
    "SNOMED",
    "710824005",
    "Assessment of health and social care needs (procedure)",
);
pub const SUBSTANCE_USE_ASSESSMENT: Code = code(
    "SNOMED",
    "428211000124100",
    "Assessment of substance use (procedure)",
);
/// A procedure whose standard concept is in the Measurement domain.
pub const DEPRESSION_SCREENING: Code =
    code("SNOMED", "171207006", "Depression screening (procedure)");
/// A procedure whose standard concept is in the Measurement domain.
pub const THROAT_CULTURE: Code = code("SNOMED", "117015009", "Throat culture (procedure)");
/// A procedure whose standard concept is in the Measurement domain.
pub const RESPIRATORY_FUNCTION: Code = code(
    "SNOMED",
    "23426006",
    "Measurement of respiratory function (procedure)",
);
pub const COLONOSCOPY: Code = code("SNOMED", "73761001", "Colonoscopy (procedure)");
pub const CHEST_X_RAY: Code = code("SNOMED", "399208008", "Plain chest X-ray (procedure)");
pub const COUNSELING: Code = code("SNOMED", "409063005", "Counseling (procedure)");

// ------------------------------------------------------------------ allergies and devices
pub const LATEX: Code = code("SNOMED", "111088007", "Latex (substance)");
pub const MOLD: Code = code("SNOMED", "84489001", "Mold (organism)");
pub const BEE_VENOM: Code = code("SNOMED", "424213003", "Allergy to bee venom");
/// A drug allergy coded in RxNorm: its standard concept is a Drug ingredient, which the pack's
/// allergy rule does not route anywhere, so these rows count as filtered.
pub const PENICILLIN_ALLERGY: Code = code("RxNorm", "7984", "Penicillin V");
pub const CORONARY_STENT: Code = code(
    "SNOMED",
    "705643001",
    "Coronary artery stent (physical object)",
);

/// Codes the generator writes that the demo vocabulary leaves out on purpose.
pub const UNMAPPED: &[Code] = &[ALCOHOL_USE, QALY, DALY, QOLS];

/// Every code the generator can write.
#[cfg(test)]
pub const EMITTED: &[Code] = &[
    HYPERTENSION,
    DIABETES,
    HYPERLIPIDEMIA,
    ASTHMA,
    CHILDHOOD_ASTHMA,
    PHARYNGITIS,
    BRONCHITIS,
    SINUSITIS,
    OTITIS_MEDIA,
    GI_BLEEDING,
    ANEMIA,
    MYOCARDIAL_INFARCTION,
    CORONARY_DISEASE,
    STROKE,
    STRESS,
    OBESITY,
    ALCOHOL_USE,
    LISINOPRIL,
    HYDROCHLOROTHIAZIDE,
    AMLODIPINE,
    METFORMIN,
    FLUTICASONE,
    ALBUTEROL,
    AMOXICILLIN,
    PENICILLIN_V,
    ACETAMINOPHEN,
    IBUPROFEN,
    ASPIRIN,
    FLU,
    TD,
    TDAP,
    PCV13,
    PPSV23,
    ZOSTER,
    HEP_B_ADULT,
    HPV,
    DTAP,
    IPV,
    HIB,
    ROTAVIRUS,
    VARICELLA,
    HEP_A_PEDIATRIC,
    MENINGOCOCCAL,
    BODY_HEIGHT,
    BODY_WEIGHT,
    BMI,
    SYSTOLIC_BP,
    DIASTOLIC_BP,
    HEART_RATE,
    RESPIRATORY_RATE,
    PAIN_SEVERITY,
    HBA1C,
    CHOLESTEROL,
    TRIGLYCERIDES,
    SMOKING_STATUS,
    QALY,
    DALY,
    QOLS,
    MEDICATION_RECONCILIATION,
    CARE_NEEDS_ASSESSMENT,
    SUBSTANCE_USE_ASSESSMENT,
    DEPRESSION_SCREENING,
    THROAT_CULTURE,
    RESPIRATORY_FUNCTION,
    COLONOSCOPY,
    CHEST_X_RAY,
    COUNSELING,
    LATEX,
    MOLD,
    BEE_VENOM,
    PENICILLIN_ALLERGY,
    CORONARY_STENT,
];

/// The demo vocabulary's concepts.
#[rustfmt::skip]
pub const CONCEPTS: &[Concept] = &[
    // Conditions.
    s(320128, "SNOMED", "59621000", "Essential hypertension", "Condition", "Clinical Finding"),
    s(201826, "SNOMED", "44054006", "Type 2 diabetes mellitus", "Condition", "Clinical Finding"),
    s(432867, "SNOMED", "55822004", "Hyperlipidemia", "Condition", "Clinical Finding"),
    s(317009, "SNOMED", "195967001", "Asthma", "Condition", "Clinical Finding"),
    s(4051466, "SNOMED", "233678006", "Childhood asthma", "Condition", "Clinical Finding"),
    s(4112343, "SNOMED", "195662009", "Acute viral pharyngitis", "Condition", "Clinical Finding"),
    s(260139, "SNOMED", "10509002", "Acute bronchitis", "Condition", "Clinical Finding"),
    s(40481087, "SNOMED", "444814009", "Viral sinusitis", "Condition", "Clinical Finding"),
    s(372328, "SNOMED", "65363002", "Otitis media", "Condition", "Clinical Finding"),
    s(192671, "SNOMED", "74474003", "Gastrointestinal hemorrhage", "Condition", "Clinical Finding"),
    s(439777, "SNOMED", "271737000", "Anemia", "Condition", "Clinical Finding"),
    s(4329847, "SNOMED", "22298006", "Myocardial infarction", "Condition", "Clinical Finding"),
    s(317576, "SNOMED", "53741008", "Coronary arteriosclerosis", "Condition", "Clinical Finding"),
    s(381316, "SNOMED", "230690007", "Cerebrovascular accident", "Condition", "Clinical Finding"),
    s(4251306, "SNOMED", "73595000", "Stress", "Condition", "Clinical Finding"),
    s(4060985, "SNOMED", "162864005", "Body mass index 30+ - obesity", "Observation", "Clinical Finding"),
    // Procedures.
    s(4326177, "SNOMED", "430193006", "Medication Reconciliation", "Procedure", "Procedure"),
    s(46272459, "SNOMED", "710824005", "Assessment of health and social care needs", "Procedure", "Procedure"),
    s(762506, "SNOMED", "428211000124100", "Assessment of substance use", "Procedure", "Procedure"),
    s(4064377, "SNOMED", "171207006", "Depression screening", "Measurement", "Procedure"),
    s(4024958, "SNOMED", "117015009", "Throat culture", "Measurement", "Procedure"),
    s(4052083, "SNOMED", "23426006", "Measurement of respiratory function", "Measurement", "Procedure"),
    s(4249893, "SNOMED", "73761001", "Colonoscopy", "Procedure", "Procedure"),
    s(4163872, "SNOMED", "399208008", "Plain chest X-ray", "Procedure", "Procedure"),
    s(4254477, "SNOMED", "409063005", "Counseling", "Procedure", "Procedure"),
    // Allergies and devices.
    s(4008070, "SNOMED", "111088007", "Latex", "Observation", "Substance"),
    s(4224654, "SNOMED", "84489001", "Mold", "Observation", "Organism"),
    s(4174876, "SNOMED", "424213003", "Allergy to bee venom", "Observation", "Clinical Finding"),
    s(45767945, "SNOMED", "705643001", "Coronary artery stent", "Device", "Physical Object"),
    // Drugs.
    s(19080128, "RxNorm", "314076", "lisinopril 10 MG Oral Tablet", "Drug", "Clinical Drug"),
    s(19078106, "RxNorm", "310798", "hydrochlorothiazide 25 MG Oral Tablet", "Drug", "Clinical Drug"),
    s(1332419, "RxNorm", "197361", "amlodipine 5 MG Oral Tablet", "Drug", "Clinical Drug"),
    s(40163924, "RxNorm", "860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet", "Drug", "Quant Clinical Drug"),
    s(40169216, "RxNorm", "895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler", "Drug", "Quant Clinical Drug"),
    s(1511248, "RxNorm", "2123111", "NDA020503 200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "Drug", "Clinical Drug"),
    s(19073183, "RxNorm", "308182", "amoxicillin 250 MG Oral Capsule", "Drug", "Clinical Drug"),
    s(19133873, "RxNorm", "834061", "penicillin V potassium 250 MG Oral Tablet", "Drug", "Clinical Drug"),
    s(1127433, "RxNorm", "313782", "acetaminophen 325 MG Oral Tablet", "Drug", "Clinical Drug"),
    s(19078461, "RxNorm", "310965", "ibuprofen 200 MG Oral Tablet", "Drug", "Clinical Drug"),
    s(19059056, "RxNorm", "243670", "aspirin 81 MG Oral Tablet", "Drug", "Clinical Drug"),
    // Ingredients (the drug_era level).
    s(1308216, "RxNorm", "29046", "lisinopril", "Drug", "Ingredient"),
    s(974166, "RxNorm", "5487", "hydrochlorothiazide", "Drug", "Ingredient"),
    s(1332418, "RxNorm", "17767", "amlodipine", "Drug", "Ingredient"),
    s(1503297, "RxNorm", "6809", "metformin", "Drug", "Ingredient"),
    s(1149380, "RxNorm", "41126", "fluticasone", "Drug", "Ingredient"),
    s(1154343, "RxNorm", "435", "albuterol", "Drug", "Ingredient"),
    s(1713332, "RxNorm", "723", "amoxicillin", "Drug", "Ingredient"),
    s(1729720, "RxNorm", "7984", "penicillin V", "Drug", "Ingredient"),
    s(1125315, "RxNorm", "161", "acetaminophen", "Drug", "Ingredient"),
    s(1177480, "RxNorm", "5640", "ibuprofen", "Drug", "Ingredient"),
    s(1112807, "RxNorm", "1191", "aspirin", "Drug", "Ingredient"),
    // Vaccines.
    s(40213154, "CVX", "140", "Influenza, seasonal, injectable, preservative free", "Drug", "CVX"),
    s(40213227, "CVX", "113", "tetanus and diphtheria toxoids, adsorbed, preservative free, for adult use", "Drug", "CVX"),
    s(40213230, "CVX", "115", "tetanus toxoid, reduced diphtheria toxoid, and acellular pertussis vaccine, adsorbed", "Drug", "CVX"),
    s(40213198, "CVX", "133", "pneumococcal conjugate vaccine, 13 valent", "Drug", "CVX"),
    s(40213201, "CVX", "33", "pneumococcal polysaccharide vaccine, 23 valent", "Drug", "CVX"),
    s(40213260, "CVX", "121", "zoster vaccine, live", "Drug", "CVX"),
    s(40213306, "CVX", "43", "hepatitis B vaccine, adult dosage", "Drug", "CVX"),
    s(40213320, "CVX", "62", "human papilloma virus vaccine, quadrivalent", "Drug", "CVX"),
    s(40213281, "CVX", "20", "diphtheria, tetanus toxoids and acellular pertussis vaccine", "Drug", "CVX"),
    s(40213160, "CVX", "10", "poliovirus vaccine, inactivated", "Drug", "CVX"),
    s(40213314, "CVX", "49", "Haemophilus influenzae type b vaccine, PRP-OMP conjugate", "Drug", "CVX"),
    s(40213216, "CVX", "119", "rotavirus, live, monovalent vaccine", "Drug", "CVX"),
    s(40213251, "CVX", "21", "varicella virus vaccine", "Drug", "CVX"),
    s(40213299, "CVX", "83", "hepatitis A vaccine, pediatric/adolescent dosage, 2 dose schedule", "Drug", "CVX"),
    s(40213180, "CVX", "114", "meningococcal polysaccharide (groups A, C, Y and W-135) diphtheria toxoid conjugate vaccine (MCV4P)", "Drug", "CVX"),
    // Measurements and observations.
    s(3036277, "LOINC", "8302-2", "Body height", "Measurement", "Clinical Observation"),
    s(3025315, "LOINC", "29463-7", "Body weight", "Measurement", "Clinical Observation"),
    s(3038553, "LOINC", "39156-5", "Body mass index (BMI) [Ratio]", "Measurement", "Clinical Observation"),
    s(3004249, "LOINC", "8480-6", "Systolic blood pressure", "Measurement", "Clinical Observation"),
    s(3012888, "LOINC", "8462-4", "Diastolic blood pressure", "Measurement", "Clinical Observation"),
    s(3027018, "LOINC", "8867-4", "Heart rate", "Measurement", "Clinical Observation"),
    s(3024171, "LOINC", "9279-1", "Respiratory rate", "Measurement", "Clinical Observation"),
    s(43055141, "LOINC", "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "Measurement", "Clinical Observation"),
    s(3004410, "LOINC", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "Measurement", "Lab Test"),
    s(3027114, "LOINC", "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "Measurement", "Lab Test"),
    s(3022192, "LOINC", "2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "Measurement", "Lab Test"),
    s(43054909, "LOINC", "72166-2", "Tobacco smoking status", "Observation", "Clinical Observation"),
    // Units.
    s(8582, "UCUM", "cm", "centimeter", "Unit", "Unit"),
    s(9529, "UCUM", "kg", "kilogram", "Unit", "Unit"),
    s(9531, "UCUM", "kg/m2", "kilogram per square meter", "Unit", "Unit"),
    s(8876, "UCUM", "mm[Hg]", "millimeter mercury column", "Unit", "Unit"),
    s(8541, "UCUM", "/min", "per minute", "Unit", "Unit"),
    s(8554, "UCUM", "%", "percent", "Unit", "Unit"),
    s(8840, "UCUM", "mg/dL", "milligram per deciliter", "Unit", "Unit"),
    s(44777566, "UCUM", "[score]", "score", "Unit", "Unit"),
    // The fixed concepts the pack writes for person and visit fields.
    s(8507, "Gender", "M", "MALE", "Gender", "Gender"),
    s(8532, "Gender", "F", "FEMALE", "Gender", "Gender"),
    s(8527, "Race", "5", "White", "Race", "Race"),
    s(8516, "Race", "3", "Black or African American", "Race", "Race"),
    s(8515, "Race", "2", "Asian", "Race", "Race"),
    s(38003563, "Ethnicity", "Hispanic", "Hispanic or Latino", "Ethnicity", "Ethnicity"),
    s(38003564, "Ethnicity", "Not Hispanic", "Not Hispanic or Latino", "Ethnicity", "Ethnicity"),
    s(9201, "Visit", "IP", "Inpatient Visit", "Visit", "Visit"),
    s(9202, "Visit", "OP", "Outpatient Visit", "Visit", "Visit"),
    s(9203, "Visit", "ER", "Emergency Room Visit", "Visit", "Visit"),
    ns(0, "None", "No matching concept", "No matching concept", "Metadata", "Undefined"),
];

/// Clinical drugs and their ingredients (`concept_ancestor`: drug → ingredient, with the
/// minimum and maximum levels of separation).
pub const DRUG_INGREDIENTS: &[(i32, i32, i32, i32)] = &[
    (19080128, 1308216, 2, 3),
    (19078106, 974166, 2, 3),
    (1332419, 1332418, 2, 3),
    (40163924, 1503297, 3, 4),
    (40169216, 1149380, 3, 4),
    (1511248, 1154343, 2, 3),
    (19073183, 1713332, 2, 3),
    (19133873, 1729720, 2, 3),
    (1127433, 1125315, 2, 3),
    (19078461, 1177480, 2, 3),
    (19059056, 1112807, 2, 3),
];

/// Unit spellings of Synthea that are not UCUM codes, mapped through the `Synthea units`
/// source_to_concept_map: (source code, target concept id).
pub const SYNTHEA_UNITS: &[(&str, i32)] = &[("{score}", 44777566)];

/// The vocabularies the demo vocabulary holds: (id, name, vocabulary_concept_id).
#[rustfmt::skip]
pub const VOCABULARIES: &[(&str, &str, i32)] = &[
    ("SNOMED", "Systematic Nomenclature of Medicine - Clinical Terms (IHTSDO)", 44819097),
    ("RxNorm", "RxNorm (NLM)", 44819104),
    ("CVX", "CDC Vaccine Administered CVX (NCIRD)", 581400),
    ("LOINC", "Logical Observation Identifiers Names and Codes (Regenstrief Institute)", 44819102),
    ("UCUM", "Unified Code for Units of Measure (Regenstrief Institute)", 44819107),
    ("Gender", "OMOP Gender", 44819108),
    ("Race", "Race and Ethnicity Code Set (USBC)", 44819109),
    ("Ethnicity", "OMOP Ethnicity", 44819134),
    ("Visit", "OMOP Visit", 44819119),
];

/// The concept of a (vocabulary, code) pair.
#[cfg(test)]
pub fn concept_of(vocabulary: &str, code: &str) -> Option<&'static Concept> {
    CONCEPTS
        .iter()
        .find(|c| c.vocabulary == vocabulary && c.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_emitted_code_is_in_the_vocabulary_unless_unmapped_on_purpose() {
        for c in EMITTED {
            let unmapped = UNMAPPED.contains(c);
            assert_eq!(
                concept_of(c.vocabulary, c.code).is_none(),
                unmapped,
                "{} {}",
                c.vocabulary,
                c.code
            );
        }
    }

    #[test]
    fn concept_ids_and_codes_are_unique() {
        let mut ids = HashSet::new();
        let mut codes = HashSet::new();
        for c in CONCEPTS {
            assert!(ids.insert(c.id), "concept {} twice", c.id);
            assert!(
                codes.insert((c.vocabulary, c.code)),
                "{} {} twice",
                c.vocabulary,
                c.code
            );
        }
        for (drug, ingredient, _, _) in DRUG_INGREDIENTS {
            let d = CONCEPTS.iter().find(|c| c.id == *drug).map(|c| c.class);
            let i = CONCEPTS
                .iter()
                .find(|c| c.id == *ingredient)
                .map(|c| c.class);
            assert!(
                matches!(d, Some("Clinical Drug" | "Quant Clinical Drug")),
                "{drug}"
            );
            assert_eq!(i, Some("Ingredient"), "{ingredient}");
        }
    }

    #[test]
    fn descriptions_need_no_csv_quoting() {
        for c in EMITTED {
            assert!(
                !c.description.contains([',', '"', '\n']),
                "{}",
                c.description
            );
        }
    }
}
