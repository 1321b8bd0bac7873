//! Reading source tables: header checks and lazy scans with row numbers.

use super::EtlError;
use crate::mapping::Source;
use polars::prelude::*;
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

    /// A lazy scan of the declared columns, all as text, plus [`ROW`].
    pub fn scan(&self) -> Result<LazyFrame, EtlError> {
        self.scan_with(
            |r| {
                r.with_row_index(Some(RowIndex {
                    name: ROW.into(),
                    offset: 1,
                }))
            },
            true,
        )
    }

    /// A reader that parses the file once, front to back, in chunks of whole records.
    pub fn chunks(&self) -> Result<ChunkReader<'_>, EtlError> {
        ChunkReader::open(self)
    }

    fn scan_with(
        &self,
        configure: impl FnOnce(LazyCsvReader) -> LazyCsvReader,
        row_index: bool,
    ) -> Result<LazyFrame, EtlError> {
        let path = self.path.to_str().ok_or_else(|| EtlError::Source {
            file: self.path.clone(),
            message: "the path is not valid UTF-8".into(),
        })?;
        let reader = LazyCsvReader::new(PlRefPath::new(path))
            .with_has_header(true)
            .with_separator(self.separator)
            .with_infer_schema_length(Some(0))
            .with_missing_is_null(true);
        let lf = configure(reader).finish().map_err(|e| EtlError::Source {
            file: self.path.clone(),
            message: e.to_string(),
        })?;
        if !row_index {
            return Ok(lf);
        }
        let mut cols: Vec<Expr> = vec![col(ROW).cast(DataType::UInt64)];
        cols.extend(self.columns.iter().map(|c| col(c.as_str())));
        Ok(lf.select(cols))
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
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return Err(EtlError::Source {
            file: path.to_path_buf(),
            message: "the file is empty: expected a header line".into(),
        });
    }
    Ok(line
        .split(separator as char)
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect())
}

/// Bytes of source text parsed at once by a [`ChunkReader`].
const CHUNK_BYTES: usize = 32 << 20;

/// Parses a source file once, front to back, in chunks of about [`CHUNK_BYTES`] that end at a
/// record boundary (a line end outside quotes). Each chunk is parsed by polars' multi-threaded
/// CSV parser into the declared columns (all text) plus [`ROW`], the 1-based data row number in
/// the file. Reading the file once keeps the cost linear in its size, whatever the chunk size.
///
/// The file is read into one buffer that is reused for every chunk, and chunks are parsed
/// straight from it: a fresh buffer per chunk cost a page fault and the kernel zeroing every
/// page of it, which was a good part of the run's time.
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
    schema: SchemaRef,
    columns: Arc<[PlSmallStr]>,
    /// The empty chunk of a file without rows was given.
    gave_empty: bool,
    /// Bytes parsed at once.
    chunk_bytes: usize,
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
        let text = String::from_utf8_lossy(&header);
        let text = text
            .trim_start_matches('\u{feff}')
            .trim_end_matches(['\r', '\n']);
        // Every header column is read as text; names are made unique so that a repeated
        // header name cannot shift the columns.
        let mut schema = Schema::with_capacity(8);
        for (i, name) in text.split(source.separator as char).enumerate() {
            let name = name.trim().trim_matches('"');
            let name = if schema.contains(name) {
                format!("{name}#{i}")
            } else {
                name.to_string()
            };
            schema.insert(name.into(), DataType::String);
        }
        Ok(Self {
            source,
            file,
            buf,
            lo: 0,
            hi,
            eof: false,
            rows: 0,
            schema: Arc::new(schema),
            columns: source.columns.iter().map(|c| c.as_str().into()).collect(),
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
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            // Blank lines only (or nothing): no rows, with the usual columns.
            let mut cols = vec![Column::new_empty(ROW.into(), &DataType::UInt64)];
            cols.extend(
                self.source
                    .columns
                    .iter()
                    .map(|c| Column::new_empty(c.as_str().into(), &DataType::String)),
            );
            return DataFrame::new_infer_height(cols).map_err(|e| EtlError::Source {
                file: self.source.path.clone(),
                message: e.to_string(),
            });
        }
        let first = self.rows + 1;
        let err = |message: String| EtlError::Source {
            file: self.source.path.clone(),
            message: format!("in the rows from data row {first} on: {message}"),
        };
        let offset =
            IdxSize::try_from(first).map_err(|_| err("too many rows for one file".into()))?;
        let separator = self.source.separator;
        let df = CsvReadOptions::default()
            .with_has_header(false)
            .with_schema(Some(self.schema.clone()))
            .with_columns(Some(self.columns.clone()))
            .with_row_index(Some(RowIndex {
                name: ROW.into(),
                offset,
            }))
            .map_parse_options(|o| o.with_separator(separator).with_missing_is_null(true))
            .into_reader_with_file_handle(std::io::Cursor::new(body))
            .finish()
            .map_err(|e| err(e.to_string()))?;
        self.rows += df.height() as u64;
        let mut cols: Vec<Expr> = vec![col(ROW).cast(DataType::UInt64)];
        cols.extend(self.source.columns.iter().map(|c| col(c.as_str())));
        df.lazy()
            .select(cols)
            .collect()
            .map_err(|e| err(e.to_string()))
    }
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
        std::fs::write(&path, text).unwrap();
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
        let whole = table.scan().unwrap().collect().unwrap();
        assert_eq!(all, whole);
        let rows: Vec<u64> = all
            .column(ROW)
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect();
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

    #[test]
    fn records_end_at_line_ends_outside_quotes() {
        assert_eq!(record_end(b"a,b\nc,d\ne"), Some(7));
        assert_eq!(record_end(b"a,\"x\ny\"\nc,\"p\nq"), Some(7));
        assert_eq!(record_end(b"a,\"x\ny"), None);
        assert_eq!(record_end(b"no line end"), None);
    }
}
