//! Stitches as an aligned text table, for tools and `--help`-style listings: one row per stitch,
//! built from [`Endpoint::describe`] so it shows exactly what the JSON description holds (minus the
//! schemas, which do not fit a row). Static header values never appear (they may be secrets).

use crate::endpoint::{Endpoint, Operation, Role};
use std::fmt;

/// The stitches of `endpoints` as a table that prints aligned rows:
///
/// ```text
/// STITCH      METHOD  TEMPLATE     ARGUMENTS            POLICIES
/// Acme::user  GET     /users/{id}  id:path fields:query cache(ttl=300000ms ...)
/// ```
///
/// `println!("{}", stitch::describe_table(AcmeClient::ENDPOINTS))`; collect one from
/// [`Operation`]s (`.collect::<OperationTable>()`) to filter or reorder first.
pub fn describe_table(endpoints: &[&Endpoint]) -> OperationTable {
    endpoints.iter().map(|e| e.describe()).collect()
}

/// Rows of [`Operation`]s; its `Display` prints them as an aligned table with a header row.
#[derive(Debug, Clone, Default)]
pub struct OperationTable {
    rows: Vec<Operation>,
}

impl OperationTable {
    /// The operations, in row order.
    pub fn operations(&self) -> &[Operation] {
        &self.rows
    }
}

impl FromIterator<Operation> for OperationTable {
    fn from_iter<I: IntoIterator<Item = Operation>>(iter: I) -> Self {
        OperationTable {
            rows: iter.into_iter().collect(),
        }
    }
}

const HEADER: [&str; 5] = ["STITCH", "METHOD", "TEMPLATE", "ARGUMENTS", "POLICIES"];

fn cells(op: &Operation) -> [String; 5] {
    let arguments = op
        .arguments
        .iter()
        .map(|a| {
            let role = match a.role {
                Role::Path => "path".to_owned(),
                Role::Query(k) if k == a.name => "query".to_owned(),
                Role::Query(k) => format!("query({k})"),
                Role::JsonBody => "body".to_owned(),
                Role::FormBody => "form".to_owned(),
                Role::Header(h) => format!("header({h})"),
                Role::SecretQuery(k) => format!("secret query({k})"),
                Role::SecretHeader(h) => format!("secret header({h})"),
            };
            format!("{}:{role}", a.name)
        })
        .collect::<Vec<_>>()
        .join(" ");
    let policies = op
        .policies
        .iter()
        .map(|p| format!("{}({})", p.name, p.value))
        .collect::<Vec<_>>()
        .join(" ");
    [
        op.name.to_owned(),
        op.method.as_str().to_owned(),
        op.template.to_string(),
        arguments,
        policies,
    ]
}

impl fmt::Display for OperationTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 5]> = self.rows.iter().map(cells).collect();
        let mut widths = HEADER.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header = HEADER.map(str::to_owned);
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                // No padding after the last column: rows carry no trailing spaces.
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}
