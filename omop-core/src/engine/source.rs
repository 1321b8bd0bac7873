//! Reading source tables: header checks and lazy scans with row numbers.

use super::EtlError;
use crate::mapping::Source;
use polars::prelude::*;
use rayon::prelude::*;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Name of the column holding the 1-based data row number of a source row.
pub const ROW: &str = "__row";

/// A source table resolved against the source folder.
#[derive(Debug, Clone)]
pub struct SourceTable {
    /// The file.
    pub path: PathBuf,
    /// The file name as given in the pack (reported in lineage).
    pub file: String,
    /// The field separator.
    pub separator: u8,
    /// The columns read.
    pub columns: Vec<String>,
}

impl SourceTable {
    /// Resolves `source` in `dir` and checks that its header has every declared column.
    pub fn open(source: &Source, dir: &Path) -> Result<Self, EtlError> {
        let path = dir.join(&source.file);
        let separator = source.separator.unwrap_or(',');
        if !separator.is_ascii() {
            return Err(EtlError::Source {
                file: path,
                message: format!("separator `{separator}` must be an ASCII character"),
            });
        }
        let header = read_header(&path, separator as u8)?;
        for column in &source.columns {
            if !header.iter().any(|h| h == column) {
                return Err(EtlError::MissingColumn {
                    file: path,
                    column: column.clone(),
                    found: header.join(", "),
                });
            }
        }
        Ok(Self {
            path,
            file: source.file.clone(),
            separator: separator as u8,
            columns: source.columns.clone(),
        })
    }

    /// A reader that parses the file once, front to back, in chunks of whole records.
    pub fn chunks(&self) -> Result<ChunkReader<'_>, EtlError> {
        ChunkReader::open(self)
    }
}

/// The declared columns (as text) of every row of `source` in `dir`, read as the ETL reads
/// them. Meant for small files: all rows are held at once.
pub fn read_source(source: &Source, dir: &Path) -> Result<DataFrame, EtlError> {
    let table = SourceTable::open(source, dir)?;
    let mut reader = table.chunks()?;
    let mut all: Option<DataFrame> = None;
    while let Some(chunk) = reader.next_chunk()? {
        match &mut all {
            Some(all) => {
                all.vstack_mut_owned(chunk)
                    .map_err(|e| super::polars_err(&source.file, e))?;
            }
            None => all = Some(chunk),
        }
    }
    match all {
        Some(all) => all
            .drop(ROW)
            .map_err(|e| super::polars_err(&source.file, e)),
        None => Ok(DataFrame::empty()),
    }
}

/// One data row of a source file as it is written, and the file's header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRow {
    /// The header line, without its line end (or a UTF-8 BOM).
    pub header: Vec<u8>,
    /// The record, quotes and all, without its line end.
    pub record: Vec<u8>,
}

/// Data row `row` of a source file (1-based, numbered as the engine numbers them: blank lines
/// are not rows, and a record may span lines inside quotes), or `None` past the last row.
pub fn data_row(path: &Path, separator: u8, row: u64) -> Result<Option<DataRow>, EtlError> {
    let err = |message: String| EtlError::Source {
        file: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut reader = records(separator, file);
    let header = match reader.read_byte_record() {
        Ok(Some(header)) => header.as_slice().to_vec(),
        Ok(None) => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut n = 0;
    loop {
        match reader.read_byte_record() {
            Ok(Some(record)) => {
                n += 1;
                if n == row {
                    return Ok(Some(DataRow {
                        header,
                        record: record.as_slice().to_vec(),
                    }));
                }
            }
            Ok(None) => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        }
    }
}

/// Reads the header line and splits it (quotes around names are removed, a UTF-8 BOM is skipped).
fn read_header(path: &Path, separator: u8) -> Result<Vec<String>, EtlError> {
    let file = std::fs::File::open(path).map_err(|e| EtlError::Source {
        file: path.to_path_buf(),
        message: format!("cannot open: {e}"),
    })?;
    let mut line = String::new();
    BufReader::new(file)
        .read_line(&mut line)
        .map_err(|e| EtlError::Source {
            file: path.to_path_buf(),
            message: format!("cannot read the header line: {e}"),
        })?;
    if strip_header(&line).is_empty() {
        return Err(EtlError::Source {
            file: path.to_path_buf(),
            message: "the file is empty: expected a header line".into(),
        });
    }
    Ok(header_names(&line, separator))
}

/// A header line without a UTF-8 BOM and its line end.
fn strip_header(line: &str) -> &str {
    line.trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n'])
}

/// The column names of a header line, each without the white space and quotes around it.
fn header_names(line: &str, separator: u8) -> Vec<String> {
    strip_header(line)
        .split(separator as char)
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect()
}

/// Bytes of source text parsed at once by a [`ChunkReader`].
const CHUNK_BYTES: usize = 32 << 20;

/// Chunks at least this long are cut into one run of records per thread, parsed at once.
const PARALLEL_BYTES: usize = 1 << 20;

/// Parses a source file once, front to back, in chunks of about [`CHUNK_BYTES`] that end at a
/// record boundary (a line end outside quotes). Each chunk becomes the declared columns (all
/// text) plus [`ROW`], the 1-based data row number in the file. Reading the file once keeps the
/// cost linear in its size, whatever the chunk size.
///
/// The file is read into one buffer that is reused for every chunk, and chunks are parsed
/// straight from it: a fresh buffer per chunk cost a page fault and the kernel zeroing every
/// page of it, which was a good part of the run's time.
///
/// The records are split by `simd-csv` (RFC 4180 quoting, `\n` or `\r\n` line ends). Only the
/// declared columns are copied out. The rules, which [`parse_records`] documents, are those of
/// polars' CSV reader except where noted there.
pub struct ChunkReader<'a> {
    source: &'a SourceTable,
    file: std::fs::File,
    /// `buf[lo..hi]` are bytes read but not parsed yet; they start at a record boundary.
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    eof: bool,
    /// Data rows parsed so far.
    rows: u64,
    /// The header's fields, and the position in it of each declared column.
    layout: Layout,
    /// The empty chunk of a file without rows was given.
    gave_empty: bool,
    /// Bytes parsed at once.
    chunk_bytes: usize,
}

/// Where the declared columns are in a file's records.
#[derive(Debug, Clone)]
struct Layout {
    /// Fields in the header.
    width: usize,
    /// The declared columns: name, and the field that holds it.
    columns: Vec<(PlSmallStr, usize)>,
    separator: u8,
    /// Runs of at least this many bytes are cut into one run of records per thread.
    parallel_bytes: usize,
}

impl<'a> ChunkReader<'a> {
    fn open(source: &'a SourceTable) -> Result<Self, EtlError> {
        let err = |message: String| EtlError::Source {
            file: source.path.clone(),
            message,
        };
        let file =
            std::fs::File::open(&source.path).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        let mut header = Vec::new();
        reader
            .read_until(b'\n', &mut header)
            .map_err(|e| err(format!("cannot read the header line: {e}")))?;
        let buf = reader.buffer().to_vec();
        let hi = buf.len();
        let file = reader.into_inner();
        let names = header_names(&String::from_utf8_lossy(&header), source.separator);
        // A repeated header name means its first field.
        let columns = source
            .columns
            .iter()
            .map(|c| {
                names
                    .iter()
                    .position(|n| n == c)
                    .map(|i| (PlSmallStr::from(c.as_str()), i))
                    .ok_or_else(|| EtlError::MissingColumn {
                        file: source.path.clone(),
                        column: c.clone(),
                        found: names.join(", "),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            source,
            file,
            buf,
            lo: 0,
            hi,
            eof: false,
            rows: 0,
            layout: Layout {
                width: names.len(),
                columns,
                separator: source.separator,
                parallel_bytes: PARALLEL_BYTES,
            },
            gave_empty: false,
            chunk_bytes: CHUNK_BYTES,
        })
    }

    /// Reads until at least `want` unparsed bytes are held or the file ends. Unparsed bytes
    /// move to the front of the buffer first; the buffer grows only for a record longer than
    /// a chunk.
    fn fill(&mut self, want: usize) -> Result<(), EtlError> {
        if self.eof || self.hi - self.lo >= want {
            return Ok(());
        }
        self.buf.copy_within(self.lo..self.hi, 0);
        self.hi -= self.lo;
        self.lo = 0;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.hi < want {
            match self.file.read(&mut self.buf[self.hi..want]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.hi += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(EtlError::Source {
                        file: self.source.path.clone(),
                        message: format!("read error: {e}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The next chunk of rows, or `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<DataFrame>, EtlError> {
        let mut want = self.chunk_bytes;
        loop {
            self.fill(want)?;
            let pending = &self.buf[self.lo..self.hi];
            if pending.is_empty() {
                // A file with a header and no rows still gives one (empty) chunk, so that
                // every rule runs and reports it.
                if self.rows == 0 && !self.gave_empty {
                    self.gave_empty = true;
                    return self.parse(self.lo, self.lo).map(Some);
                }
                return Ok(None);
            }
            let head = &pending[..pending.len().min(want)];
            let cut = match record_end(head) {
                Some(end) => end + 1,
                None if self.eof => pending.len(),
                None => match record_end(pending) {
                    Some(end) => end + 1,
                    None => {
                        // One record longer than the chunk: read on.
                        want = pending.len() * 2;
                        continue;
                    }
                },
            };
            let (a, b) = (self.lo, self.lo + cut);
            self.lo = b;
            let df = self.parse(a, b)?;
            if df.height() == 0 {
                continue;
            }
            return Ok(Some(df));
        }
    }

    /// Parses `buf[a..b]`, whole records.
    fn parse(&mut self, a: usize, b: usize) -> Result<DataFrame, EtlError> {
        let body = &self.buf[a..b];
        // Blank lines only (or nothing): no rows, with the usual columns.
        let body = if body.iter().all(|b| b.is_ascii_whitespace()) {
            &body[..0]
        } else {
            body
        };
        let first = self.rows + 1;
        let df = parse_records(body, &self.layout, first).map_err(|message| EtlError::Source {
            file: self.source.path.clone(),
            message,
        })?;
        self.rows += df.height() as u64;
        Ok(df)
    }
}

/// Parses whole records into [`ROW`] (numbered from `first`) and the declared columns, as
/// text. A long run is cut into one run of records per thread, parsed at once.
///
/// - A record ends at a line end (`\n` or `\r\n`) outside quotes. Blank lines are not
///   records (polars reads each as a row of nulls).
/// - An empty field is null; a quoted empty field (`""`) is the empty text.
/// - A field that starts and ends with a quote loses them, and a doubled quote inside it is
///   one quote. A quote inside an unquoted field starts a quoted run, as the cut between
///   chunks assumes (polars keeps such a quote as text).
/// - A record with fewer fields than the header has nulls for the fields it lacks; one with
///   more is an error naming its data row, and so is text that is not UTF-8.
fn parse_records(body: &[u8], layout: &Layout, first: u64) -> Result<DataFrame, String> {
    let threads = rayon::current_num_threads();
    let mut parts = Vec::with_capacity(threads);
    let mut lo = 0;
    if body.len() >= layout.parallel_bytes {
        let target = body.len() / threads;
        while parts.len() + 1 < threads && lo + target < body.len() {
            let Some(end) = record_end(&body[lo..lo + target]) else {
                break;
            };
            parts.push(&body[lo..lo + end + 1]);
            lo += end + 1;
        }
    }
    parts.push(&body[lo..]);
    let parsed: Vec<Result<Part, (usize, String)>> =
        parts.par_iter().map(|p| parse_part(p, layout)).collect();
    let mut rows = 0usize;
    let mut columns: Vec<Option<StringChunked>> = vec![None; layout.columns.len()];
    for part in parsed {
        let part = part.map_err(|(record, message)| {
            format!("data row {}: {message}", first + (rows + record) as u64)
        })?;
        rows += part.rows;
        for (all, column) in columns.iter_mut().zip(part.columns) {
            match all {
                Some(all) => all.append_owned(column).map_err(|e| e.to_string())?,
                None => *all = Some(column),
            }
        }
    }
    let mut out = Vec::with_capacity(columns.len() + 1);
    out.push(Column::new(
        ROW.into(),
        (first..first + rows as u64).collect::<Vec<u64>>(),
    ));
    for (column, (name, _)) in columns.into_iter().zip(&layout.columns) {
        let column = column.unwrap_or_else(|| StringChunked::full_null(name.clone(), 0));
        out.push(column.into_column());
    }
    DataFrame::new(rows, out).map_err(|e| e.to_string())
}

/// The records of `input`, split by the rules [`parse_records`] documents (the header, if
/// any, is the first record; records may have any number of fields).
fn records<R: Read>(separator: u8, input: R) -> simd_csv::ZeroCopyReader<R> {
    simd_csv::ZeroCopyReaderBuilder::new()
        .delimiter(separator)
        .has_headers(false)
        .flexible(true)
        .from_reader(input)
}

/// The declared columns of one run of whole records.
struct Part {
    columns: Vec<StringChunked>,
    rows: usize,
}

/// Parses one run of whole records (see [`parse_records`]). An error gives the 0-based record
/// it is about.
fn parse_part(part: &[u8], layout: &Layout) -> Result<Part, (usize, String)> {
    if let Err(e) = std::str::from_utf8(part) {
        // The record that holds the first byte that is not UTF-8.
        let at = e.valid_up_to() as u64;
        let mut reader = records(layout.separator, part);
        let mut record = 0;
        while let Ok(Some(_)) = reader.read_byte_record() {
            if reader.position() > at {
                break;
            }
            record += 1;
        }
        return Err((record, "the text is not valid UTF-8".into()));
    }
    // Every record takes at least one line end (but the last).
    let capacity = memchr::memchr_iter(b'\n', part).count() + 1;
    let mut columns: Vec<StringChunkedBuilder> = layout
        .columns
        .iter()
        .map(|(name, _)| StringChunkedBuilder::new(name.clone(), capacity))
        .collect();
    let mut reader = records(layout.separator, part);
    let mut rows = 0;
    loop {
        let record = match reader.read_byte_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => return Err((rows, e.to_string())),
        };
        if record.len() > layout.width {
            return Err((
                rows,
                format!(
                    "{} fields, but the header has {}",
                    record.len(),
                    layout.width
                ),
            ));
        }
        for (column, &(_, field)) in columns.iter_mut().zip(&layout.columns) {
            match record.unescape(field) {
                None => column.append_null(),
                Some(cell) if cell.is_empty() && record.get(field) == Some(b"") => {
                    column.append_null()
                }
                // SAFETY: `part` is valid UTF-8 (checked above), and a cell is a piece of it
                // cut at ASCII bytes (separator, quote, line end) with ASCII quotes taken
                // out, so it is valid UTF-8 too.
                Some(cell) => column.append_value(unsafe { std::str::from_utf8_unchecked(&cell) }),
            }
        }
        rows += 1;
    }
    Ok(Part {
        columns: columns.into_iter().map(|c| c.finish()).collect(),
        rows,
    })
}

/// The position of the last line end of `bytes` that is outside double quotes, given that
/// `bytes` starts outside quotes (quotes are balanced before a line end outside quotes).
fn record_end(bytes: &[u8]) -> Option<usize> {
    let mut end = memchr::memrchr(b'\n', bytes)?;
    let mut quotes = memchr::memchr_iter(b'"', &bytes[..end]).count();
    loop {
        if quotes.is_multiple_of(2) {
            return Some(end);
        }
        let prev = memchr::memrchr(b'\n', &bytes[..end])?;
        quotes -= memchr::memchr_iter(b'"', &bytes[prev..end]).count();
        end = prev;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with quoted separators and line ends, read in chunks far smaller than a record,
    /// come out whole, numbered 1.. without gaps, and equal to one read of the whole file.
    #[test]
    fn chunks_split_only_between_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.csv");
        let mut text = String::from("\u{feff}ID,NOTE,CODE\n");
        for i in 0..500 {
            text.push_str(&format!(
                "id{i},\"line one, {i}\nline \"\"two\"\"\",{}\n",
                i * 7
            ));
        }
        std::fs::write(&path, &text).unwrap();
        let source = Source {
            file: "notes.csv".into(),
            separator: None,
            columns: vec!["NOTE".into(), "ID".into()],
            key: Vec::new(),
        };
        let table = SourceTable::open(&source, dir.path()).unwrap();
        let mut reader = table.chunks().unwrap();
        reader.chunk_bytes = 64;
        let mut parts = Vec::new();
        while let Some(df) = reader.next_chunk().unwrap() {
            parts.push(df);
        }
        assert!(parts.len() > 100, "{} chunks", parts.len());
        let mut all = parts[0].clone();
        for p in &parts[1..] {
            all.vstack_mut(p).unwrap();
        }
        let body = &text.as_bytes()[text.find('\n').unwrap() + 1..];
        let layout = layout(&["ID", "NOTE", "CODE"], &["NOTE", "ID"], b',');
        assert!(all.equals_missing(&polars_records(body, &["ID", "NOTE", "CODE"], &layout)));
        let rows = row_numbers(&all);
        assert_eq!(rows, (1..=500).collect::<Vec<u64>>());
        let note = all
            .column("NOTE")
            .unwrap()
            .str()
            .unwrap()
            .get(499)
            .unwrap()
            .to_string();
        assert_eq!(note, "line one, 499\nline \"two\"");
    }

    #[test]
    fn a_header_without_rows_gives_one_empty_chunk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.csv"), "A,B\n").unwrap();
        let source = Source {
            file: "empty.csv".into(),
            separator: None,
            columns: vec!["B".into()],
            key: Vec::new(),
        };
        let table = SourceTable::open(&source, dir.path()).unwrap();
        let mut reader = table.chunks().unwrap();
        let first = reader.next_chunk().unwrap().expect("one empty chunk");
        assert_eq!(first.height(), 0);
        assert_eq!(first.get_column_names(), [ROW, "B"]);
        assert!(reader.next_chunk().unwrap().is_none());
    }

    /// polars' CSV reader, as the engine used it before it parsed records itself: the oracle
    /// the record parser is compared with.
    fn polars_records(body: &[u8], header: &[&str], layout: &Layout) -> DataFrame {
        let mut schema = Schema::with_capacity(header.len());
        for name in header {
            schema.insert((*name).into(), DataType::String);
        }
        let columns: Arc<[PlSmallStr]> = layout.columns.iter().map(|(n, _)| n.clone()).collect();
        let separator = layout.separator;
        let df = CsvReadOptions::default()
            .with_has_header(false)
            .with_schema(Some(Arc::new(schema)))
            .with_columns(Some(columns))
            .with_row_index(Some(RowIndex {
                name: ROW.into(),
                offset: 1,
            }))
            .map_parse_options(|o| o.with_separator(separator).with_missing_is_null(true))
            .into_reader_with_file_handle(std::io::Cursor::new(body))
            .finish()
            .unwrap();
        let mut cols: Vec<Expr> = vec![col(ROW).cast(DataType::UInt64)];
        cols.extend(layout.columns.iter().map(|(n, _)| col(n.clone())));
        df.lazy().select(cols).collect().unwrap()
    }

    /// A seeded random source with the two draws the tests need.
    struct Draw(rand_pcg::Pcg64Mcg);

    impl Draw {
        fn new(seed: u64) -> Self {
            use rand::SeedableRng;
            Self(rand_pcg::Pcg64Mcg::seed_from_u64(seed))
        }
        fn below(&mut self, n: usize) -> usize {
            use rand::RngExt;
            self.0.random_range(0..n.max(1))
        }
        fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
            &items[self.below(items.len())]
        }
    }

    fn layout(header: &[&str], declared: &[&str], separator: u8) -> Layout {
        Layout {
            width: header.len(),
            columns: declared
                .iter()
                .map(|d| {
                    let at = header.iter().position(|h| h == d).unwrap();
                    ((*d).into(), at)
                })
                .collect(),
            separator,
            // Small, so that most records are cut into runs parsed at once.
            parallel_bytes: 16,
        }
    }

    /// Seeded random files of well-formed records (quoted fields holding separators, line
    /// ends and doubled quotes; empty and quoted empty fields; short records; `\n` or `\r\n`;
    /// with or without a last line end; any separator) parse exactly as polars parses them.
    #[test]
    fn records_parse_as_polars_parses_them() {
        const WORDS: &[&str] = &[
            "a",
            "Ola Nordmann",
            "2020-01-01T10:00:00Z",
            "æøå",
            "  ",
            "x-1",
        ];
        const QUOTED: &[&str] = &[
            "\"\"",
            "\"a{s}b\"",
            "\"two\nlines\"",
            "\"say \"\"hi\"\"\"",
            "\"crlf\r\nin\"",
            "\"{s}\"",
        ];
        for seed in 0..400u64 {
            let mut rng = Draw::new(seed);
            let separator = *rng.pick(b",;\t|");
            let sep = (separator as char).to_string();
            let header: Vec<&str> = ["A", "B", "C", "D", "E"][..2 + rng.below(4)].to_vec();
            let mut declared: Vec<&str> = header
                .iter()
                .copied()
                .filter(|_| rng.below(3) > 0)
                .collect();
            if declared.is_empty() {
                declared.push(header[header.len() - 1]);
            }
            if rng.below(2) == 0 {
                declared.reverse();
            }
            let eol = if rng.below(3) == 0 { "\r\n" } else { "\n" };
            let mut text = String::new();
            let records = 1 + rng.below(40);
            for r in 0..records {
                let fields = 1 + rng.below(header.len());
                let cells: Vec<String> = (0..fields)
                    .map(|f| match rng.below(4) {
                        // An only field left empty would be a blank line.
                        0 if fields > 1 || f > 0 => String::new(),
                        1 => rng.pick(QUOTED).replace("{s}", &sep),
                        _ => rng.pick(WORDS).to_string(),
                    })
                    .collect();
                text.push_str(&cells.join(&sep));
                if r + 1 < records || rng.below(2) == 0 {
                    text.push_str(eol);
                }
            }
            let layout = layout(&header, &declared, separator);
            let ours = parse_records(text.as_bytes(), &layout, 1)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text:?}"));
            let theirs = polars_records(text.as_bytes(), &header, &layout);
            assert!(
                ours.equals_missing(&theirs),
                "seed {seed}, declared {declared:?}\n{text:?}\nours {ours}\npolars {theirs}"
            );
        }
    }

    fn row_numbers(df: &DataFrame) -> Vec<u64> {
        df.column(ROW)
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    }

    fn texts(df: &DataFrame, column: &str) -> Vec<Option<String>> {
        df.column(column)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    /// Where the record parser differs from polars, and its errors.
    #[test]
    fn blank_lines_stray_quotes_and_bad_records() {
        let layout = layout(&["A", "B"], &["A", "B"], b',');
        let s = |v: &str| Some(v.to_string());

        // Blank lines are not records, so they take no row number.
        let df = parse_records(b"a,b\n\n\r\nc,\"\"\n", &layout, 1).unwrap();
        assert_eq!(texts(&df, "A"), [s("a"), s("c")]);
        assert_eq!(texts(&df, "B"), [s("b"), s("")]);
        let rows = row_numbers(&df);
        assert_eq!(rows, [1, 2]);

        // A quote inside an unquoted field starts a quoted run, up to the next quote.
        let df = parse_records(b"ab\"c,d\",e\nf,g\n", &layout, 1).unwrap();
        assert_eq!(texts(&df, "A"), [s("ab\"c,d\""), s("f")]);
        assert_eq!(texts(&df, "B"), [s("e"), s("g")]);

        // Too many fields: the data row is named, counted from `first` across runs.
        let mut body = b"a,b\n".repeat(20);
        body.extend_from_slice(b"c,d,e\n");
        let err = parse_records(&body, &layout, 101).unwrap_err();
        assert_eq!(err, "data row 121: 3 fields, but the header has 2");

        // Text that is not UTF-8, in the second of two runs parsed at once.
        let mut body = b"a,b\n".repeat(30);
        body.extend_from_slice(b"c,\xff\xfe\n");
        body.extend_from_slice(&b"a,b\n".repeat(3));
        let err = parse_records(&body, &layout, 1).unwrap_err();
        assert_eq!(err, "data row 31: the text is not valid UTF-8");
    }

    /// Arbitrary bytes never make the parser panic, and whatever parses is numbered 1.. with
    /// no more rows than lines.
    #[test]
    fn arbitrary_bytes_parse_or_fail_cleanly() {
        const BYTES: &[u8] = b"ab,,\"\"\n\n\r \xff\xc3\xa5;";
        for seed in 0..2000u64 {
            let mut rng = Draw::new(seed);
            let body: Vec<u8> = (0..rng.below(120)).map(|_| *rng.pick(BYTES)).collect();
            let layout = layout(&["A", "B", "C"], &["C", "A"], *rng.pick(b",;"));
            if let Ok(df) = parse_records(&body, &layout, 1) {
                let lines = memchr::memchr_iter(b'\n', &body).count() + 1;
                assert!(df.height() <= lines, "seed {seed}: {body:?}");
                let rows = row_numbers(&df);
                assert_eq!(rows, (1..=df.height() as u64).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn records_end_at_line_ends_outside_quotes() {
        assert_eq!(record_end(b"a,b\nc,d\ne"), Some(7));
        assert_eq!(record_end(b"a,\"x\ny\"\nc,\"p\nq"), Some(7));
        assert_eq!(record_end(b"a,\"x\ny"), None);
        assert_eq!(record_end(b"no line end"), None);
    }
}
