//! Many rows bound as the parameters of one statement: the per-row values
//! of a set-based write, as `WITH v(…) AS MATERIALIZED (VALUES (…), …)`.
//!
//! Why parameters and not one JSON document: pulling fields out of JSON
//! cost SQLite more than inserting the rows did (measured on 63 created
//! tasks: 1.8 ms of extraction against 1.1 ms of inserts). Why
//! `MATERIALIZED`: both databases then scan the rows once, as the outer side
//! of a join probing the target table's primary key.
//!
//! Row counts are padded up to a power of two with rows of NULLs (which
//! match no key and are filtered out of inserts), so a statement takes one
//! of a few shapes and stays in the connection's prepared-statement cache.
//!
//! On PostgreSQL two rows or more travel as one array per column instead,
//! read back as `MATERIALIZED (SELECT * FROM unnest($1::text[], …))`: the
//! statement's text no longer depends on how many rows it carries, and it
//! has a handful of parameters rather than one per cell. With a parameter
//! per cell, every execution re-planned a `VALUES` list of hundreds of
//! expressions and built an executor step for each one (performance.md,
//! finding 58).
//!
//! The rows' parameters come first, and on SQLite every parameter of such a
//! statement is an anonymous `?` (see [`Placeholders`]): SQLite looks a
//! named parameter (`$7`) up by walking the list of names, so binding n of
//! them costs n² (measured: 27 ms to bind 4,096 named parameters, 3 ms for
//! as many anonymous ones).

use super::dialect;

/// Most rows one statement carries: 1,024 rows of up to 11 columns stay
/// well under SQLite's 32,766 bound parameters.
pub(crate) const MAX_ROWS: usize = 1024;

/// A column's SQL type, for the NULLs that pad a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Text,
    Int,
    Bool,
}

/// One value, or (on PostgreSQL, from [`Rows::into_args`]) one column of
/// values.
#[derive(Debug, Clone)]
pub(crate) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Texts(Vec<Option<String>>),
    Ints(Vec<Option<i64>>),
    Bools(Vec<Option<bool>>),
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(Some(v))
    }
}

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(Some(v.to_owned()))
    }
}

impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Self {
        Cell::Text(v)
    }
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(Some(v))
    }
}

impl From<Option<i64>> for Cell {
    fn from(v: Option<i64>) -> Self {
        Cell::Int(v)
    }
}

impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Bool(Some(v))
    }
}

/// Rows for one statement, named `v` with the given columns.
pub(crate) struct Rows {
    cols: &'static [(&'static str, Kind)],
    cells: Vec<Cell>,
    /// See [`Rows::read_once`].
    once: bool,
}

impl Rows {
    pub(crate) fn new(cols: &'static [(&'static str, Kind)]) -> Self {
        Rows {
            cols,
            cells: vec![],
            once: false,
        }
    }

    /// Marks rows the statement reads once, in order, joined to nothing
    /// (an `INSERT … SELECT … FROM v`): SQLite then takes them straight
    /// from the statement's `VALUES` as it inserts, instead of writing them
    /// into a temporary table first (`AVOID_TEMP_TABLES`). A join needs the
    /// table: SQLite would otherwise re-run the `VALUES` per probe.
    pub(crate) fn read_once(mut self) -> Self {
        self.once = true;
        self
    }

    /// Adds a row; its cells are in column order.
    pub(crate) fn push<const N: usize>(&mut self, row: [Cell; N]) {
        debug_assert_eq!(N, self.cols.len(), "a row has one cell per column");
        self.cells.extend(row);
    }

    pub(crate) fn len(&self) -> usize {
        self.cells.len() / self.cols.len().max(1)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Whether the rows travel as arrays. A single row stays one `VALUES`
    /// row: it is the whole of an idle queue's create, and the arrays cost
    /// it more than they saved (performance.md, finding 58).
    fn as_arrays(&self) -> bool {
        dialect::ROWS_AS_ARRAYS && self.len() > 1
    }

    /// Rows the statement's text has room for: padded to a power of two
    /// unless they travel as arrays.
    fn padded(&self) -> usize {
        self.len().max(1).next_power_of_two()
    }

    /// `WITH v(cols) AS MATERIALIZED (VALUES …)`, which opens the
    /// statement: its parameters are the first ones. The statement's other
    /// parameters come from the returned [`Placeholders`], in the order they
    /// appear in its text, and are bound in that order after [`into_args`](Self::into_args).
    pub(crate) fn with_clause(&self) -> (String, Placeholders) {
        let mut p = Placeholders { next: 1 };
        let cte = self.cte("v", &mut p);
        (format!("WITH {cte}"), p)
    }

    /// `name(cols) AS MATERIALIZED (VALUES …)`, a further table of rows in a
    /// statement's `WITH`, its parameters taken from `p` where it stands
    /// in the text.
    pub(crate) fn cte(&self, name: &str, p: &mut Placeholders) -> String {
        use std::fmt::Write;
        if self.as_arrays() {
            let mut sql = format!("{name}(");
            let mut arrays = String::new();
            for (i, (col, kind)) in self.cols.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                    arrays.push_str(", ");
                }
                sql.push_str(col);
                let ty = match kind {
                    Kind::Text => "text",
                    Kind::Int => "int8",
                    Kind::Bool => "bool",
                };
                let _ = write!(arrays, "{}::{ty}[]", p.next());
            }
            let _ = write!(sql, ") AS MATERIALIZED (SELECT * FROM unnest({arrays}))");
            return sql;
        }
        // Written into one string: built per batch, this was a twentieth of
        // the SQLite writer's time as a string per cell joined twice.
        let width = self.cols.len();
        let padded = self.padded();
        let anonymous = dialect::param(1) == "?";
        let mut sql = String::with_capacity(64 + padded * width * 6);
        sql.push_str(name);
        sql.push('(');
        for (i, (col, _)) in self.cols.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(col);
        }
        // A lone row is not worth a temporary table: SQLite folds it into
        // the statement as constants (`AVOID_TEMP_TABLES`). Nor are rows
        // read once.
        sql.push_str(
            if (padded == 1 || self.once) && dialect::AVOID_TEMP_TABLES {
                ") AS (VALUES "
            } else {
                ") AS MATERIALIZED (VALUES "
            },
        );
        for r in 0..padded {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                if anonymous {
                    sql.push('?');
                } else {
                    let _ = write!(sql, "${}", p.next);
                }
                p.next += 1;
            }
            sql.push(')');
        }
        sql.push(')');
        sql
    }

    /// The statement's first arguments: every cell, then the padding; or,
    /// with arrays, one array per column.
    pub(crate) fn into_args(self) -> Vec<Cell> {
        if self.as_arrays() {
            return self.columns();
        }
        let pad = self.padded() - self.len();
        let mut args = self.cells;
        args.reserve(pad * self.cols.len());
        for _ in 0..pad {
            args.extend(self.cols.iter().map(|(_, kind)| match kind {
                Kind::Text => Cell::Text(None),
                Kind::Int => Cell::Int(None),
                Kind::Bool => Cell::Bool(None),
            }));
        }
        args
    }

    /// The cells regrouped by column, each column one array.
    fn columns(self) -> Vec<Cell> {
        let (width, rows) = (self.cols.len(), self.len());
        let mut columns: Vec<Cell> = self
            .cols
            .iter()
            .map(|(_, kind)| match kind {
                Kind::Text => Cell::Texts(Vec::with_capacity(rows)),
                Kind::Int => Cell::Ints(Vec::with_capacity(rows)),
                Kind::Bool => Cell::Bools(Vec::with_capacity(rows)),
            })
            .collect();
        for (i, cell) in self.cells.into_iter().enumerate() {
            let Some(column) = columns.get_mut(i % width.max(1)) else {
                continue;
            };
            // A cell of another kind than its column's is a bug in the
            // caller; it is bound as NULL rather than shifting the row.
            match (column, cell) {
                (Cell::Texts(c), Cell::Text(v)) => c.push(v),
                (Cell::Ints(c), Cell::Int(v)) => c.push(v),
                (Cell::Bools(c), Cell::Bool(v)) => c.push(v),
                (column, cell) => {
                    debug_assert!(false, "{cell:?} in a column of {column:?}");
                    match column {
                        Cell::Texts(c) => c.push(None),
                        Cell::Ints(c) => c.push(None),
                        Cell::Bools(c) => c.push(None),
                        _ => {}
                    }
                }
            }
        }
        columns
    }

    /// The statement's arguments: [`into_args`](Self::into_args), then `rest`.
    pub(crate) fn args_then<const N: usize>(self, rest: [Cell; N]) -> Vec<Cell> {
        let mut args = self.into_args();
        args.extend(rest);
        args
    }
}

/// A statement's parameters in the order of its text: `$n` on PostgreSQL,
/// `?` on SQLite (which numbers anonymous parameters in order of
/// appearance).
pub(crate) struct Placeholders {
    next: usize,
}

impl Placeholders {
    /// The next parameter.
    #[allow(clippy::should_implement_trait)]
    pub(crate) fn next(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        dialect::param(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: &[(&str, Kind)] = &[("v_id", Kind::Text), ("v_n", Kind::Int)];

    #[test]
    fn pads_to_a_power_of_two_and_numbers_the_rest_after() {
        if dialect::ROWS_AS_ARRAYS {
            return;
        }
        let mut rows = Rows::new(COLS);
        for n in 0..3 {
            rows.push([Cell::from(format!("t{n}")), Cell::from(n)]);
        }
        assert_eq!(rows.len(), 3);
        let (sql, mut rest) = rows.with_clause();
        let p: Vec<String> = (1..=9).map(dialect::param).collect();
        assert_eq!(
            sql,
            format!(
                "WITH v(v_id, v_n) AS MATERIALIZED (VALUES ({}, {}), ({}, {}), ({}, {}), ({}, {}))",
                p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
            )
        );
        assert_eq!(rest.next(), p[8]);
        assert_eq!(rows.into_args().len(), 8);

        // A lone row: SQLite folds it into the statement.
        let mut one = Rows::new(COLS);
        one.push([Cell::from("t"), Cell::from(7)]);
        let (sql, _) = one.with_clause();
        let table = if dialect::AVOID_TEMP_TABLES {
            ""
        } else {
            "MATERIALIZED "
        };
        assert_eq!(
            sql,
            format!("WITH v(v_id, v_n) AS {table}(VALUES ({}, {}))", p[0], p[1])
        );

        // Rows read once: SQLite takes them straight from `VALUES`.
        let mut once = Rows::new(COLS).read_once();
        for n in 0..2 {
            once.push([Cell::from(format!("t{n}")), Cell::from(n)]);
        }
        let (sql, _) = once.with_clause();
        assert_eq!(
            sql,
            format!(
                "WITH v(v_id, v_n) AS {table}(VALUES ({}, {}), ({}, {}))",
                p[0], p[1], p[2], p[3]
            )
        );
    }

    #[test]
    fn binds_one_array_per_column_and_numbers_the_rest_after() {
        if !dialect::ROWS_AS_ARRAYS {
            return;
        }
        let mut rows = Rows::new(COLS);
        for n in 0..3 {
            rows.push([Cell::from(format!("t{n}")), Cell::from(n)]);
        }
        rows.push([Cell::from(None::<String>), Cell::from(None::<i64>)]);
        let (sql, mut rest) = rows.with_clause();
        assert_eq!(
            sql,
            "WITH v(v_id, v_n) AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::int8[]))"
        );
        assert_eq!(rest.next(), "$3");
        let args = rows.into_args();
        let [Cell::Texts(ids), Cell::Ints(ns)] = args.as_slice() else {
            panic!("two arrays, text then int8: {args:?}");
        };
        assert_eq!(
            ids,
            &[
                Some("t0".into()),
                Some("t1".into()),
                Some("t2".into()),
                None
            ]
        );
        assert_eq!(ns, &[Some(0), Some(1), Some(2), None]);

        // One row stays a row.
        let mut one = Rows::new(COLS);
        one.push([Cell::from("t"), Cell::from(7)]);
        let (sql, mut rest) = one.with_clause();
        assert_eq!(sql, "WITH v(v_id, v_n) AS MATERIALIZED (VALUES ($1, $2))");
        assert_eq!(rest.next(), "$3");
        assert_eq!(one.into_args().len(), 2);
    }
}
